"""pip install of the pure-Python core for machines without ROS (e.g. training servers).

    pip install .            # core (inference, runtime, ground, data, ...), lednet-segment
    pip install .[train]     # + matplotlib, onnx, onnxruntime

On a ROS 2 machine build with colcon instead: package.xml selects ament_cmake, which also generates
the messages of msg/ and installs the node executables, launch/ and config/. This file plays no
part in that build.
"""

from setuptools import find_packages, setup

setup(
    name="lednet_ros",
    version="0.1.0",
    description="LEDNet real-time semantic segmentation: core library, training and tools",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=find_packages(include=["lednet_ros", "lednet_ros.core", "lednet_ros.core.*",
                                    "lednet_ros.tools"]),
    package_data={"lednet_ros": ["weights/*.safetensors", "weights/*.graphs/*", "weights/*.md"]},
    install_requires=[
        "torch>=2.1",
        "numpy",
        "opencv-python-headless",
        "safetensors",
        "pyyaml",
        "tqdm",
    ],
    extras_require={
        "train": ["matplotlib", "onnx", "onnxruntime"],
        "fast": ["onnx", "onnxruntime"],
        "eval": ["rosbags"],
    },
    entry_points={"console_scripts": ["lednet-segment = lednet_ros.tools.segment_files:main"]},
)
