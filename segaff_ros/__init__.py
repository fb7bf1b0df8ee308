"""SegAffordance's ROS 2 face: the ``segaff_perception`` node, the synthetic camera and pure conversions.

The model lives in ``segaff_core`` (no ROS); this package only converts messages, synchronises the
camera inputs, hands the newest frame to the ``Predictor`` and publishes its answer.
"""
