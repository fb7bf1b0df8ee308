"""SegAffordance: language-conditioned affordance perception for articulated objects (ROS 2)."""
from glob import glob

from setuptools import find_packages, setup

package_name = "segaff_ros"

setup(
    name=package_name,
    version="0.1.0",
    description="Language-conditioned part segmentation, interaction point and motion prediction "
    "for articulated objects, with a ROS 2 perception node.",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["segaff_core", "segaff_core.*", "segaff_ros", "segaff_ros.*"]),
    package_data={"segaff_core": ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
        (f"share/{package_name}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{package_name}/rviz", glob("rviz/*.rviz")),
        (f"share/{package_name}/checkpoints", glob("checkpoints/*.ckpt")),  # segaff_core.paths finds it there
    ],
    install_requires=["setuptools"],
    # Optional runtimes; the pinned core dependencies are in requirements-core.txt (ROS builds skip pip).
    # TensorRT for NVIDIA GPUs: the CUDA 13 wheels match the torch 2.14 CUDA 13.0 build; with a CUDA 12
    # build of torch install tensorrt-cu12==11.4.0.106 instead. onnxruntime-gpu adds ONNX Runtime's CUDA
    # provider (replaces onnxruntime in the environment).
    extras_require={
        "tensorrt": ["tensorrt-cu13==11.4.0.106"],
        "onnxruntime-gpu": ["onnxruntime-gpu==1.31.1"],
    },
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "segaff = segaff_core.cli:main",
            "segaff-perception = segaff_ros.perception_node:main",
            "perception_node = segaff_ros.perception_node:main",
            "synthetic_camera = segaff_ros.synthetic_camera:main",
            "segaff-demo = segaff_ros.demo:main",
        ],
    },
)
