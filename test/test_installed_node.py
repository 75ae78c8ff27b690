"""The node as `ros2 run lednet_ros segmentation_node` starts it: the colcon install's launcher.

No PYTHONPATH to the source tree and no parameters: the packaged weights, the CPU engine `auto`
picks, and a fresh LEDNET_ROS_CACHE. The graphs shipped beside the weights are what the engine
runs, so nothing is exported at start (no torch, no `onnx` package needed). In the apt lane
(.ci/apt_lane) this is the ROS machine set up as the README says: Debian's NumPy, OpenCV and
torch, only the README's pip lines.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from skips import install_prefix, skip_without_built_messages

skip_without_built_messages()

import rclpy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from lednet_ros.core.inference.engine_choice import installed_runtimes  # noqa: E402
from lednet_ros.msg import ClassInfo  # noqa: E402
from lednet_ros.nodes.segmentation_node import NODE_NAME  # noqa: E402

from drawn_scenes import sky_road_card  # noqa: E402
from node_rig import LATCHED, RELIABLE, next_namespace  # noqa: E402
from ros_helpers import (  # noqa: E402
    Collector, NodeProcess, make_image, spinning, wait_for_subscribers)

APT_SITE = "/usr/lib/python3/dist-packages"


def run_installed_node(tmp_path, context, parameters=()) -> tuple:
    """Start the installed launcher, publish a frame until its labels come, stop it.

    Returns (labels message, frame, the process's mapped libraries, its output, the cache).
    """
    launcher = install_prefix() / "lib" / "lednet_ros" / "segmentation_node"
    cache = tmp_path / "cache"
    namespace = next_namespace()
    command = [str(launcher), "--ros-args", "-r", f"__ns:={namespace}"]
    command += [arg for p in parameters for arg in ("-p", p)]
    probe = rclpy.create_node("installed_probe", namespace=namespace, context=context)
    class_info = Collector(probe, ClassInfo, f"{namespace}/{NODE_NAME}/class_info", LATCHED)
    labels = Collector(probe, Image, f"{namespace}/{NODE_NAME}/labels", RELIABLE)
    frame = sky_road_card()
    # the environment `ros2 run` gives: the install space (sourced), no source tree
    env = dict(os.environ, LEDNET_ROS_CACHE=str(cache))
    with spinning(context, probe), NodeProcess(command, tmp_path, env=env) as process:
        class_info.wait(1, timeout=90)
        image_pub = probe.create_publisher(Image, "image", RELIABLE)
        wait_for_subscribers(image_pub)
        message = make_image(frame, "rgb8", stamp=(7, 0))
        probe.create_timer(0.5, lambda: image_pub.publish(message))  # until the labels come
        (got,) = labels.wait(1, timeout=120)[:1]
        libraries = Path(f"/proc/{process.process.pid}/maps").read_text()
    output = process.output()
    assert process.returncode == 0, output
    assert got.header.stamp.sec == 7 and (got.height, got.width) == frame.shape[:2]
    assert "Traceback" not in output, output
    return got, frame, libraries, output, cache


def test_the_installed_node_segments_frames_with_a_fresh_cache(tmp_path, context):
    """No parameters: the CPU engine `auto` picks, on the graphs shipped beside the weights."""
    if not set(installed_runtimes()) & {"onnxruntime", "openvino"}:
        pytest.skip("neither onnxruntime nor openvino is installed: the node would run torch")
    _, _, libraries, output, cache = run_installed_node(tmp_path, context)
    assert "libtorch" not in libraries and "torch/lib" not in libraries, output
    # the shipped graphs ran: nothing was exported into the fresh cache
    assert not list(cache.rglob("*.onnx")), sorted(cache.rglob("*"))


def test_the_installed_node_runs_on_this_torch(tmp_path, context):
    """engine:=torch on whatever torch is installed (the apt lane: Debian's 1.13)."""
    _, _, libraries, output, _ = run_installed_node(tmp_path, context, ["engine:=torch"])
    assert "torch/lib" in libraries or "libtorch" in libraries, output
    assert ", engine torch, " in output, output  # the start-up line


def test_the_apt_lane_sees_debians_own_numpy_opencv_and_torch():
    """In the apt lane the packages rosdep installs from apt are the ones imported."""
    if os.environ.get("LEDNET_LANE") != "apt":
        pytest.skip("not the apt lane (.ci/apt_lane): this lane's NumPy/OpenCV/torch are pip's")
    import cv2
    import numpy
    import torch

    for module in (numpy, cv2, torch):
        assert module.__file__.startswith(APT_SITE), f"{module.__name__} from {module.__file__}"
    assert numpy.__version__.startswith("1."), numpy.__version__
    assert sys.prefix != sys.base_prefix  # the lane's venv, made with --system-site-packages
