"""pip install of the pure-Python core for machines without ROS (e.g. training servers).

On a ROS 2 machine, build with colcon instead: package.xml selects ament_cmake, which also generates
the messages of msg/ and installs the node executables, launch/ and config/.
"""

from setuptools import setup

setup(
    name="lednet_ros",
    version="0.1.0",
    description="LEDNet real-time semantic segmentation: core library, training and tools",
    license="BSD-3-Clause",
    packages=["lednet_ros"],
    package_data={"lednet_ros": ["weights/*.safetensors", "weights/*.md"]},
    python_requires=">=3.10",
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
        "eval": ["rosbags", "matplotlib"],
    },
    entry_points={"console_scripts": ["lednet-segment = lednet_ros.segment_files:main"]},
)
