"""Full-resolution frames across processes over real DDS, with the shipped Fast DDS profile.

Issue 8: with Fast DDS defaults a 2048x1024 rgb8 frame (6.3 MB) from another process never reaches
a best-effort (sensor-data) subscription. Here the segmentation node runs in its own process with
its default sensor-data subscription, our camera publisher in another (publishing with rclpy's
default QoS, reliable depth 10, as most drivers do, or with best effort), both with
config/fastdds_shm.xml; the labels come back to this process.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import pytest

from skips import skip_without_built_messages

skip_without_built_messages()

import rclpy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from lednet_ros.msg import ClassInfo  # noqa: E402
from lednet_ros.nodes.segmentation_node import NODE_NAME  # noqa: E402
from lednet_ros.tools.cli import profile_environment  # noqa: E402

from drawn_scenes import street  # noqa: E402
from node_rig import LATCHED, RELIABLE  # noqa: E402
from ros_helpers import (  # noqa: E402
    Collector, NodeProcess, node_command, process_environment, ros_context, spinning, wait_until,
)

PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_shm.xml"
NAMESPACE = "/transport_test"
WIDTH, HEIGHT = 2048, 1024
FRAMES = 10


@pytest.fixture(scope="module")
def environment():
    if not PROFILE.is_file():
        pytest.fail(f"{PROFILE} is missing")
    return process_environment(profile_environment(PROFILE))


@pytest.fixture(scope="module")
def frames_folder(tmp_path_factory) -> Path:
    """Two small street-like frames; the camera publisher scales them up to 2048x1024."""
    folder = tmp_path_factory.mktemp("transport_frames")
    for index in range(2):
        rgb = street(128, 256, shift=80 * index)
        cv2.imwrite(str(folder / f"frame_{index}.png"), rgb[:, :, ::-1])
    return folder


@pytest.fixture(scope="module")
def segmentation_process(tmp_path_factory, random_weights, environment):
    """Run the node in its own process.

    Default (sensor-data) input QoS, network input 256x128.
    """
    workdir = tmp_path_factory.mktemp("transport_node")
    command = node_command("lednet_ros.nodes.segmentation_node",
                           {"weights": str(random_weights), "engine": "torch"},
                           ros_args=["-r", f"__ns:={NAMESPACE}"])
    with NodeProcess(command, workdir, env=environment) as process:
        yield process


@pytest.mark.parametrize("camera_qos", ["reliable", "best_effort"])
def test_2048x1024_frames_from_another_process_come_back_as_labels(
        segmentation_process, frames_folder, environment, tmp_path, camera_qos):
    camera = node_command("lednet_ros.nodes.camera_publisher", {
        "source": str(frames_folder), "loop": True, "max_frames": FRAMES, "fps": 4.0,
        "width": WIDTH, "height": HEIGHT, "frame_id": f"camera_{camera_qos}",
        "qos_reliability": camera_qos, "wait_for_subscribers": 1,
    }, ros_args=["-r", f"__ns:={NAMESPACE}"])
    with ros_context() as context:
        probe = rclpy.create_node("transport_probe", namespace=NAMESPACE, context=context)
        labels = Collector(probe, Image, f"{NAMESPACE}/{NODE_NAME}/labels", RELIABLE)
        class_info = Collector(probe, ClassInfo, f"{NAMESPACE}/{NODE_NAME}/class_info", LATCHED)
        with spinning(context, probe):
            class_info.wait(1, timeout=90)  # the node is up
            wait_until(lambda: labels.subscription.get_publisher_count() > 0,
                       message="the labels publisher")
            with NodeProcess(camera, tmp_path, env=environment) as publisher:
                wait_until(lambda: publisher.process.poll() is not None, timeout=60,
                           message="the camera publisher to finish")
                deadline = time.monotonic() + 5.0  # the last frames' labels; some may be
                while len(labels.messages) < FRAMES and time.monotonic() < deadline:
                    time.sleep(0.05)  # dropped (newest frame wins): counted below
            received = [m for m in labels.messages if m.header.frame_id == f"camera_{camera_qos}"]
    assert publisher.returncode == 0, publisher.output()
    assert f"source finished: {FRAMES} frames published" in publisher.output()
    assert len(received) >= FRAMES // 2, (  # all 10 arrive here; Fast DDS defaults: 0 to 2
        f"{len(received)} of {FRAMES} frames came back as labels\n"
        f"node output:\n{segmentation_process.output()[-3000:]}")
    for msg in received:
        assert (msg.width, msg.height, msg.encoding) == (WIDTH, HEIGHT, "mono8")
        assert len(msg.data) == WIDTH * HEIGHT
    assert "no frame for" not in segmentation_process.output()
