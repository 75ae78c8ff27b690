"""The camera publisher and the main-job demo, end to end over real DDS in separate processes."""

from __future__ import annotations

import csv
import sys

import cv2
import numpy as np
import pytest

from skips import skip_without_built_messages

skip_without_built_messages()


import rclpy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from lednet_ros.core.data.classes import CAMVID, CITYSCAPES  # noqa: E402
from lednet_ros.tools.demo import DEFAULT_SOURCE  # noqa: E402

from drawn_scenes import street  # noqa: E402
from ros_helpers import (  # noqa: E402
    Collector, NodeProcess, node_command, ros_context, run_process, spinning, wait_until,
)


def write_video(path, frames: int, size=(160, 120)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    for index in range(frames):
        writer.write(street(size[1], size[0], shift=7 * index)[:, :, ::-1])
    writer.release()
    return path


def run_demo(tmp_path, *arguments):
    out = tmp_path / "demo_output"
    command = [sys.executable, "-m", "lednet_ros.tools.demo", "--out", str(out),
               *map(str, arguments)]
    return run_process(command, cwd=tmp_path, timeout=240), out


def check_results(result, out, class_names, frames: int, image_size):
    """Exit 0, a CSV row per segmented frame with fractions summing to 1, overlays written."""
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out / "occupancy.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["stamp", *class_names]
    assert 1 <= len(rows) - 1 <= frames
    stamps = [float(row[0]) for row in rows[1:]]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    for row in rows[1:]:
        fractions = [float(value) for value in row[1:]]
        assert min(fractions) >= 0.0 and sum(fractions) == pytest.approx(1.0, abs=1e-4)
    overlays = sorted(out.glob("overlay_*.png"))
    assert overlays and overlays[0].name == "overlay_0000.png"
    for path in overlays:
        assert cv2.imread(str(path)).shape == (image_size[1], image_size[0], 3)
    assert f"{len(rows) - 1} frames segmented" in result.stdout
    assert "latency" in result.stdout
    assert "node diagnostics: cpu " in result.stdout  # the segmentation status, not the health one
    return rows


def test_demo_runs_end_to_end_on_a_made_video(tmp_path, random_weights):
    video = write_video(tmp_path / "street.avi", frames=12)
    result, out = run_demo(tmp_path, "--source", video, "--frames", 6, "--fps", 4,
                           "--weights", random_weights, "--save-every", 2)
    check_results(result, out, CITYSCAPES.names, frames=6, image_size=(160, 120))
    assert "camera: 6 frames published" in result.stdout
    assert (out / "node.log").is_file() and (out / "camera.log").is_file()


def test_demo_runs_on_the_debian_street_video_with_the_packaged_weights(tmp_path):
    if not DEFAULT_SOURCE.is_file():
        pytest.skip(f"{DEFAULT_SOURCE} is absent: apt-get install opencv-doc (.ci/setup does)")
    result, out = run_demo(tmp_path, "--frames", 5, "--fps", 4)
    check_results(result, out, CAMVID.names, frames=5, image_size=(768, 576))


def test_demo_names_a_missing_input_and_how_to_get_it(tmp_path):
    missing = tmp_path / "no_such_video.avi"
    result, _ = run_demo(tmp_path, "--source", missing)
    assert result.returncode == 2
    assert str(missing) in result.stderr and "opencv-doc" in result.stderr


def test_camera_publisher_publishes_a_folder_resized_then_finishes(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(3):
        bgr = street(64, 128, shift=20 * index)[:, :, ::-1]
        cv2.imwrite(str(folder / f"{index:02d}.png"), bgr)
    (folder / "03_broken.png").write_bytes(b"not a png")
    namespace = "/camera_publisher_test"
    command = node_command("lednet_ros.nodes.camera_publisher", {
        "source": str(folder), "fps": 20.0, "width": 64, "encoding": "bgr8",
        "frame_id": "test_camera", "wait_for_subscribers": 1,
    }, ros_args=["-r", f"__ns:={namespace}"])
    with ros_context() as context:
        probe = rclpy.create_node("camera_probe", context=context)
        images = Collector(probe, Image, f"{namespace}/image")
        infos = Collector(probe, CameraInfo, f"{namespace}/camera_info")
        with spinning(context, probe), NodeProcess(command, tmp_path) as camera:
            wait_until(lambda: camera.process.poll() is not None, timeout=60,
                       message="the camera publisher to finish")
            images.wait(3, timeout=5)
    assert camera.returncode == 0, camera.output()
    assert "cannot decode image" in camera.output() and "03_broken.png" in camera.output()
    assert "source finished: 3 frames published, 1 unreadable skipped" in camera.output()
    received = images.messages
    assert len(received) == 3
    for msg in received:
        assert (msg.width, msg.height, msg.encoding, msg.step) == (64, 32, "bgr8", 64 * 3)
        assert msg.header.frame_id == "test_camera"
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in received]
    assert stamps == sorted(stamps) and stamps[0] > 0
    first = np.frombuffer(received[0].data, np.uint8).reshape(32, 64, 3)
    expected = cv2.resize(street(64, 128), (64, 32), interpolation=cv2.INTER_AREA)
    assert np.abs(first[:, :, ::-1].astype(int) - expected).max() <= 1  # bgr8 of the RGB frame
    for info in infos.messages:
        assert (info.width, info.height, info.k[0], info.k[2]) == (64, 32, 64.0, 32.0)


def test_camera_publisher_refuses_a_missing_source(tmp_path):
    missing = tmp_path / "nothing_here"
    result = run_process(
        node_command("lednet_ros.nodes.camera_publisher", {"source": str(missing)}),
        cwd=tmp_path)
    assert result.returncode == 1
    assert str(missing) in result.stderr and "no such file or folder" in result.stderr
