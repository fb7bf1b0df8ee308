"""SegAffordance core: model, losses, data, training and inference. Never imports ROS."""

__version__ = "0.1.0"
