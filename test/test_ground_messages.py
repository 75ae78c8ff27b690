"""Ground maps as ROS messages (lednet_ros.ros.ground_messages): round trips, no ROS graph."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")
pytest.importorskip("nav_msgs.msg", reason="nav_msgs is not installed")

from sensor_msgs.msg import PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from lednet_ros.core.ground.mapping import POINT_DTYPE, XYZ_DTYPE  # noqa: E402
from lednet_ros.ros.ground_messages import (  # noqa: E402
    occupancy_grid_message, point_cloud_message,
)

from ros_helpers import points_from_message  # noqa: E402

RNG = np.random.default_rng(11)


def header(frame_id="base_footprint"):
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = 12, 345
    return h


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (100, 200)])
def test_occupancy_grid_round_trip(shape):
    grid = RNG.integers(-1, 101, shape).astype(np.int8)
    msg = occupancy_grid_message(grid, 0.1, (1.7, -5.0), header())
    assert msg.header.frame_id == "base_footprint"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345)
    assert msg.info.map_load_time == msg.header.stamp
    assert (msg.info.height, msg.info.width) == shape
    assert msg.info.resolution == pytest.approx(0.1)
    origin = msg.info.origin
    assert (origin.position.x, origin.position.y, origin.position.z) == (1.7, -5.0, 0.0)
    assert (origin.orientation.x, origin.orientation.y, origin.orientation.z,
            origin.orientation.w) == (0.0, 0.0, 0.0, 1.0)
    back = np.array(msg.data, dtype=np.int8).reshape(msg.info.height, msg.info.width)
    np.testing.assert_array_equal(back, grid)  # row-major: data[row * width + col]


@pytest.mark.parametrize("grid, resolution, message", [
    (np.zeros((2, 2), dtype=np.int16), 0.1, r"dtype int16; expected a 2-D int8"),
    (np.zeros(4, dtype=np.int8), 0.1, r"shape \(4,\)"),
    (np.full((2, 2), 101, dtype=np.int8), 0.1, r"values span 101..101; expected -1..100"),
    (np.full((2, 2), -5, dtype=np.int8), 0.1, r"values span -5..-5"),
    (np.zeros((2, 2), dtype=np.int8), 0.0, r"resolution 0.0; expected > 0"),
])
def test_bad_grids_are_refused(grid, resolution, message):
    with pytest.raises(ValueError, match=message):
        occupancy_grid_message(grid, resolution, (0.0, 0.0), header())


@pytest.mark.parametrize("count", [0, 1, 37])
def test_point_cloud_round_trip(count):
    points = np.zeros(count, dtype=POINT_DTYPE)
    for name in ("x", "y", "z"):
        points[name] = RNG.normal(size=count)
    points["rgb"] = RNG.integers(0, 1 << 24, count, dtype=np.uint32).view(np.float32)
    points["label"] = RNG.integers(0, 19, count)
    msg = point_cloud_message(points, header("map"))
    assert msg.header.frame_id == "map" and msg.header.stamp.nanosec == 345
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1), ("rgb", 12, PointField.FLOAT32, 1),
        ("label", 16, PointField.UINT8, 1)]
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, count, 20, 20 * count)
    assert msg.is_dense and not msg.is_bigendian
    assert bytes(msg.data) == points.tobytes()
    back = points_from_message(msg)
    for name in POINT_DTYPE.names:
        np.testing.assert_array_equal(back[name], points[name])


def test_point_cloud_of_other_fields_and_not_dense():
    points = np.zeros(3, dtype=[("x", np.float32), ("intensity", np.int16),
                                ("label", np.uint32)])
    points["x"] = [1.0, np.nan, 3.0]
    msg = point_cloud_message(points, header())
    assert [(f.name, f.offset, f.datatype) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32), ("intensity", 4, PointField.INT16),
        ("label", 6, PointField.UINT32)]
    assert msg.point_step == 10 and not msg.is_dense
    np.testing.assert_array_equal(points_from_message(msg)["label"], points["label"])


def test_organized_point_cloud_keeps_the_image_layout_and_its_nans():
    points = np.zeros((3, 4), dtype=XYZ_DTYPE)
    points["x"] = np.arange(12, dtype=np.float32).reshape(3, 4)
    points["y"][1, 2] = np.nan
    msg = point_cloud_message(points, header("base_link"))
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (3, 4, 12, 48)
    assert not msg.is_dense and msg.header.frame_id == "base_link"
    back = points_from_message(msg).reshape(3, 4)
    np.testing.assert_array_equal(back["x"], points["x"])
    assert np.isnan(back["y"][1, 2]) and np.isfinite(np.delete(back["y"].ravel(), 6)).all()


@pytest.mark.parametrize("points, message", [
    (np.zeros(3, dtype=np.float32), r"expected a 1-D or 2-D structured array"),
    (np.zeros((2, 2, 2), dtype=POINT_DTYPE), r"shape \(2, 2, 2\)"),
    (np.zeros(2, dtype=[("x", np.complex64)]), r"field 'x' has type <c8"),
    (np.zeros(2, dtype=[("x", ">f4")]), r"field 'x' has type >f4.*native byte order"),
    (np.zeros(2, dtype=[("x", np.float32, (3,))]), r"field 'x' has type"),
])
def test_bad_point_arrays_are_refused(points, message):
    with pytest.raises(ValueError, match=message):
        point_cloud_message(points, header())
