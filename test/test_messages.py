"""Building ROS messages from the core's arrays (lednet_ros/ros/messages.py), without a graph."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skips import skip_without_built_messages

skip_without_built_messages()


from rclpy.clock import Clock, ClockType  # noqa: E402
from rclpy.duration import Duration  # noqa: E402
from rclpy.validate_full_topic_name import validate_full_topic_name  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from lednet_ros.core.data.classes import CAMVID, CITYSCAPES  # noqa: E402
from lednet_ros.core.inference.checkpoint import WeightsMetadata  # noqa: E402
from lednet_ros.core.runtime.images import rgb_from_message  # noqa: E402
from lednet_ros.core.runtime.occupancy import class_occupancy  # noqa: E402
from lednet_ros.ros.messages import (  # noqa: E402
    class_info_message, class_topic_names, image_message, occupancy_message, scaled_camera_info,
    stamp_age,
)

from drawn_scenes import sky_road_card  # noqa: E402

RNG = np.random.default_rng(7)


def header(sec=3, nanosec=7, frame_id="camera_optical"):
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


@pytest.mark.parametrize("height, width", [(1, 1), (7, 3), (5, 64)])
def test_image_message_round_trips(height, width):
    labels = RNG.integers(0, 19, (height, width), dtype=np.uint8)
    msg = image_message(labels, "mono8", header())
    assert (msg.encoding, msg.height, msg.width, msg.step) == ("mono8", height, width, width)
    assert msg.header == header()
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(height, width), labels)
    rgb = sky_road_card(height, width)
    msg = image_message(rgb, "rgb8", header())
    assert msg.step == 3 * width
    np.testing.assert_array_equal(rgb_from_message(msg), rgb)


def test_image_message_refuses_mismatched_arrays():
    with pytest.raises(ValueError, match=r"mono8 needs an H x W x 1 uint8 array, got \(2, 2, 3\)"):
        image_message(sky_road_card(2, 2), "mono8", header())
    with pytest.raises(ValueError, match="rgb8 needs .* got \\(2, 2\\) float32"):
        image_message(np.zeros((2, 2), np.float32), "rgb8", header())
    with pytest.raises(ValueError, match="cannot write encoding '32FC1'"):
        image_message(np.zeros((2, 2), np.float32), "32FC1", header())


def test_occupancy_message_carries_counts_fractions_and_grid_row_major():
    labels = np.zeros((4, 6), np.uint8)
    labels[:, 3:] = 2  # right half class 2
    labels[3, 0] = 1
    labels[0, 0] = 255  # void: not counted
    occupancy = class_occupancy(labels, 3, (2, 3))
    msg = occupancy_message(occupancy, ["a", "b", "c"], (6, 4), header())
    assert (msg.width, msg.height, msg.grid_rows, msg.grid_cols) == (6, 4, 2, 3)
    assert list(msg.class_names) == ["a", "b", "c"]
    assert list(msg.pixel_counts) == [10, 1, 12]
    assert sum(msg.fractions) == pytest.approx(1.0)
    cells = np.array(msg.cell_pixel_counts).reshape(2, 3, 3)
    np.testing.assert_array_equal(cells.sum(axis=(0, 1)), msg.pixel_counts)
    # cell (row 1, col 0) covers rows 2-3, cols 0-1: 3 of class a, 1 of class b
    assert list(cells[1, 0]) == [3, 1, 0]
    assert list(cells[0, 2]) == [0, 0, 4]
    cell_fractions = np.array(msg.cell_fractions).reshape(2, 3, 3)
    np.testing.assert_allclose(cell_fractions.sum(axis=2), 1.0, rtol=1e-6)
    assert msg.header == header()
    with pytest.raises(ValueError, match="2 class names for 3 counted classes"):
        occupancy_message(occupancy, ["a", "b"], (6, 4), header())


def test_class_info_message_from_metadata():
    meta = WeightsMetadata.from_class_set(CAMVID, input_size=[480, 360],
                                          metrics={"mean_iou": 0.625})
    msg = class_info_message(meta, "/w/camvid.safetensors", (320, 240), header())
    assert list(msg.class_names) == list(CAMVID.names)
    assert msg.dataset == "camvid" and msg.weights == "/w/camvid.safetensors"
    assert (msg.input_width, msg.input_height) == (320, 240)
    assert msg.mean_iou == pytest.approx(0.625)
    for color, expected in zip(msg.colors, CAMVID.colors):
        assert [round(255 * c) for c in (color.r, color.g, color.b)] == list(expected)
        assert color.a == 1.0
    no_metrics = WeightsMetadata.from_class_set(CITYSCAPES)
    assert math.isnan(class_info_message(no_metrics, "w", (1, 1), header()).mean_iou)


def camera_info(width=640, height=480):
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.k = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
    info.p = [500.0, 0.0, 320.0, -25.0, 0.0, 510.0, 240.0, 4.0, 0.0, 0.0, 1.0, 0.0]
    info.d = [0.1, -0.2, 0.0, 0.0, 0.05]
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 40, 20, 400, 300
    return info


def test_scaled_camera_info_scales_intrinsics_and_roi():
    scaled = scaled_camera_info(camera_info(), (640, 480), (320, 120), header())
    assert (scaled.width, scaled.height) == (320, 120)
    np.testing.assert_allclose(scaled.k, [250, 0, 160, 0, 127.5, 60, 0, 0, 1])
    np.testing.assert_allclose(scaled.p, [250, 0, 160, -12.5, 0, 127.5, 60, 1, 0, 0, 1, 0])
    np.testing.assert_allclose(scaled.d, camera_info().d)
    assert scaled.distortion_model == "plumb_bob"
    roi = scaled.roi
    assert (roi.x_offset, roi.y_offset, roi.width, roi.height) == (20, 5, 200, 75)
    assert scaled.header == header()


def test_scaled_camera_info_at_the_same_size_is_a_copy_with_the_new_header():
    info = camera_info()
    same = scaled_camera_info(info, (640, 480), (640, 480), header(9, 9, "labels"))
    assert list(same.k) == list(info.k) and list(same.p) == list(info.p)
    assert same.header.frame_id == "labels"


def test_class_topic_names_are_valid_and_unique():
    names = ["road", "traffic light", "3d object", "", "car/truck", "traffic_light", "a  b"]
    tokens = class_topic_names(names)
    assert tokens == ["road", "traffic_light", "c3d_object", "class_3", "car_truck",
                      "traffic_light_5", "a_b"]
    for token in tokens + class_topic_names(CITYSCAPES.names) + class_topic_names(CAMVID.names):
        validate_full_topic_name(f"/lednet_segmentation/occupancy/{token}")  # raises if invalid


def test_stamp_age_is_seconds_on_the_given_clock_and_none_when_unstamped():
    clock = Clock(clock_type=ClockType.ROS_TIME)
    stamp = (clock.now() - Duration(seconds=2.5)).to_msg()
    assert 2.5 <= stamp_age(Header(stamp=stamp), clock) < 3.5
    assert stamp_age(Header(), clock) is None  # 0.0: no stamp, not 56 years of latency
