"""Depth (core/ground/depth.py) and the ground outputs made from it (core/ground/mapping.py).

Units (REP 118), pairing by stamp, registration refusals, 3-D points; and scenes of known
geometry rendered with exact depth (rendered_scenes.py): a 2 m box on a 10% slope and a table top
0.7 m high are mapped where they stand with depth, and the flat-ground model puts both too far.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from lednet_ros.core.data.classes import CAMVID
from lednet_ros.core.ground.class_groups import default_class_groups
from lednet_ros.core.ground.clouds import aligned_points, free_points, obstacle_points
from lednet_ros.core.ground.depth import (
    DepthError, DepthPairer, DepthProjector, depth_from_message, depth_metres, registered_depth,
)
from lednet_ros.core.ground.footprints import footprint_run
from lednet_ros.core.ground.mapping import GridSpec, GroundMapper
from lednet_ros.core.runtime.images import ImageFormatError

from rendered_scenes import ROAD, Box, Scene

GRID = GridSpec(resolution=0.1, range=20.0, width=10.0)
BOX_ON_SLOPE = Scene(boxes=(Box(x=(8.0, 10.0), y=(-1.0, 1.0), z=(0.5, 2.5)),), slope=0.1,
                     slope_from=3.0)  # the slope is 0.5 m high at 8 m: the box stands on it
TABLE = Scene(boxes=(Box(x=(4.0, 5.0), y=(-0.6, 0.6), z=(0.68, 0.72)),))  # a top, no legs
CANOPY = Scene(boxes=(Box(x=(5.0, 7.0), y=(-2.0, 2.0), z=(2.5, 3.0),
                          label=CAMVID.names.index("tree")),))


def test_depth_units_follow_rep_118():
    millimetres = np.array([[0, 1000, 65535]], np.uint16)
    np.testing.assert_allclose(depth_metres(millimetres, "16UC1"), [[np.nan, 1.0, 65.535]])
    metres = np.array([[np.nan, np.inf, -1.0, 0.0, 2.5]], np.float32)
    np.testing.assert_allclose(depth_metres(metres, "32FC1"),
                               [[np.nan, np.nan, np.nan, np.nan, 2.5]])
    with pytest.raises(DepthError, match="depth encoding 'mono16'"):
        depth_metres(millimetres, "mono16")


def test_depth_messages_are_read_with_their_step_and_byte_order():
    image = pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs is not installed").Image
    values = np.array([[1500, 0], [250, 4000]], np.uint16)
    padded = np.zeros((2, 6), np.uint8)
    padded[:, :4] = values.astype(">u2").view(np.uint8).reshape(2, 4)
    msg = image(height=2, width=2, encoding="16UC1", is_bigendian=1, step=6,
                data=padded.tobytes())
    np.testing.assert_allclose(depth_from_message(msg), [[1.5, np.nan], [0.25, 4.0]])
    msg.encoding = "rgb8"
    with pytest.raises(ImageFormatError, match=r"unsupported encoding 'rgb8' \(supported: "
                                               r"16UC1, 32FC1\)"):
        depth_from_message(msg)


def test_pairing_takes_the_nearest_depth_within_the_skew():
    pairer = DepthPairer(max_skew=0.02, keep=3)
    assert pairer.match(10**9) == (None, "no depth image received yet")
    for ms in (0, 33, 66, 100):  # 30 Hz; keeps the last three
        pairer.add(10**9 + ms * 10**6, f"depth {ms}")
    assert pairer.match(10**9 + 60 * 10**6) == ("depth 66", pytest.approx(0.006))
    sample, why = pairer.match(10**9 + 200 * 10**6)
    assert sample is None and why == "no depth within 0.02 s of the frame (nearest 0.100 s away)"
    assert pairer.match(10**9)[0] is None  # dropped: older than the three kept
    with pytest.raises(ValueError, match="depth.max_skew is -1"):
        DepthPairer(max_skew=-1)


def test_unregistered_depth_is_refused_with_the_values():
    depth = np.ones((240, 320), np.float32)
    assert registered_depth(depth, "cam", "cam", (480, 640)).shape == (480, 640)
    with pytest.raises(DepthError, match=re.escape("depth frame_id 'depth_optical' is not the "
                                                   "image's 'color_optical'")):
        registered_depth(depth, "depth_optical", "color_optical", (480, 640))
    with pytest.raises(DepthError, match="depth of 320x240 does not scale to the 640x360 labels"):
        registered_depth(depth, "cam", "cam", (360, 640))


def test_points_of_rendered_ground_lie_on_it():
    depth, labels = TABLE.render()
    projector = DepthProjector()
    base = projector.points(depth, TABLE.camera, TABLE.pose)
    road = labels == ROAD
    assert road.mean() > 0.3
    np.testing.assert_allclose(base[road][:, 2], 0.0, atol=1e-3)
    optical = projector.points(depth, TABLE.camera)
    np.testing.assert_allclose(optical[..., 2][road], depth[road], rtol=1e-6)
    top = (labels != ROAD) & np.isfinite(depth)
    np.testing.assert_allclose(base[top][:, 2], 0.7, atol=0.03)  # the table top's underside


def map_scene(scene: Scene, with_depth: bool, **options):
    depth, labels = scene.render()
    mapper = GroundMapper(default_class_groups("camvid", CAMVID.names))
    points = DepthProjector().points(depth, scene.camera, scene.pose) if with_depth else None
    return mapper.map(labels, scene.camera, scene.pose, GRID, footprint_run(0.03, 360),
                      depth_points=points, **options), labels


def blocked_xy(maps):
    costmap = maps.costmap()
    rows, cols = np.nonzero(costmap == 100)
    return (maps.origin[0] + (cols + 0.5) * maps.resolution,
            maps.origin[1] + (rows + 0.5) * maps.resolution)


@pytest.mark.parametrize("scene, flat_error", [(BOX_ON_SLOPE, 4.0), (TABLE, 3.5)])
def test_depth_maps_objects_where_they_stand_and_flat_ground_too_far(scene, flat_error):
    """Flat ground puts an object's lowest visible edge where its ray meets z = 0: x h / (h - z).

    Box on the slope: bottom edge 0.5 m up at 8 m -> 12 m (4 m too far); table top 0.7 m up at
    4 m -> 7.5 m (3.5 m too far).
    """
    (box,) = scene.boxes
    depth_maps, _ = map_scene(scene, with_depth=True)
    x, y = blocked_xy(depth_maps)
    assert len(x) > 10 and box.footprint_contains(x, y, margin=GRID.resolution).all()
    assert x.min() == pytest.approx(box.x[0], abs=2 * GRID.resolution)  # its front face

    flat_maps, _ = map_scene(scene, with_depth=False)
    x, y = blocked_xy(flat_maps)
    nearest = x[np.abs(y) < 0.5].min()
    assert nearest - box.x[0] == pytest.approx(flat_error, abs=0.3)


def test_flat_ground_calls_the_road_under_a_table_free_and_depth_does_not():
    (top,) = TABLE.boxes
    centre = (int((0.0 - GRID.origin(TABLE.pose)[1]) / GRID.resolution),
              int((4.5 - GRID.origin(TABLE.pose)[0]) / GRID.resolution))
    flat_maps, _ = map_scene(TABLE, with_depth=False)
    depth_maps, _ = map_scene(TABLE, with_depth=True)
    assert depth_maps.costmap()[centre] == 100
    assert flat_maps.costmap()[centre] != 100


def test_points_above_max_height_are_overhangs_and_left_out():
    maps, _ = map_scene(CANOPY, with_depth=True)
    assert len(blocked_xy(maps)[0]) == 0  # a canopy 2.5 m up blocks nothing
    low, _ = map_scene(CANOPY, with_depth=True, max_height=3.5)
    assert len(blocked_xy(low)[0]) > 10


def test_depth_only_leaves_pixels_without_depth_unknown_and_auto_maps_them_flat():
    depth, labels = TABLE.render()
    depth[:, : depth.shape[1] // 2] = np.nan  # the left half has no depth
    points = DepthProjector().points(depth, TABLE.camera, TABLE.pose)
    mapper = GroundMapper(default_class_groups("camvid", CAMVID.names))
    auto = mapper.map(labels, TABLE.camera, TABLE.pose, GRID, depth_points=points)
    only = mapper.map(labels, TABLE.camera, TABLE.pose, GRID, depth_points=points,
                      depth_only=True)
    left = (auto.observed > 0)[GRID.shape[0] // 2 + 5:]  # cells left of the camera (y > 0)
    assert left.any() and not (only.observed > 0)[GRID.shape[0] // 2 + 5:].any()
    assert (auto.observed > 0).sum() > (only.observed > 0).sum()


def test_clouds_from_depth_keep_measured_heights():
    maps, labels = map_scene(BOX_ON_SLOPE, with_depth=True)
    obstacles = obstacle_points(maps, 0.3, step=2)
    # the box's face, measured, up to max_height (2 m): its top 2.5 m up is left out
    assert 1.8 < obstacles["z"].max() <= 2.0 and obstacles["z"].min() < 0.7
    free = free_points(maps, step=2)
    assert free["z"].max() > 0.3  # road on the slope, at its height
    aligned = aligned_points(maps)
    assert aligned.shape == labels.shape
    assert np.isfinite(aligned["x"][maps.depth_kept]).all()
    assert not np.isfinite(aligned["x"][~maps.mapped]).any()
