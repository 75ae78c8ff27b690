"""The node's ground outputs over real DDS: grids, costmap, points, confidence, parameters.

The geometry itself is tested in test_ground.py on synthetic scenes; here the node wires it:
frame, stamp, resolution, origin and size of the grids, runtime changes taking effect on the next
frame, refusals with the reason, and nothing computed while nobody subscribes.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")
pytest.importorskip("nav_msgs", reason="nav_msgs is not installed")

from nav_msgs.msg import OccupancyGrid  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from lednet_ros.core.inference.segmenter import default_weights_path  # noqa: E402
from lednet_ros.ros.parameters import ConfigurationError  # noqa: E402

from drawn_scenes import road_scene, sky_road_card  # noqa: E402
from ros_helpers import (  # noqa: E402
    make_image, pinhole_camera_info, points_from_message, set_parameters, wait_for_subscribers,
    wait_until,
)

WIDTH, HEIGHT = 160, 96


def camera_info() -> CameraInfo:
    """Return a pinhole camera for 160 x 96 frames: 90 degrees across."""
    return pinhole_camera_info(WIDTH, HEIGHT, 80.0, 80.0, 80.0, 48.0)


def send(rig, image_pub, info_pub, sec, rgb=None):
    info_pub.publish(camera_info())
    wait_until(lambda: rig.camera.camera_info is not None, message="camera_info at the node")
    image_pub.publish(make_image(sky_road_card() if rgb is None else rgb, "rgb8", stamp=(sec, 0)))


def camera_publishers(rig):
    """Return the probe's image and camera_info publishers, once the node subscribes to both."""
    image_pub, info_pub = rig.publisher(), rig.publisher(CameraInfo, "camera_info")
    wait_for_subscribers(image_pub)
    wait_for_subscribers(info_pub)
    return image_pub, info_pub


# The wiring tests run drawn frames (and random weights) that the perception health flags and
# whose road is unsure: the fail-safe rules (test_fail_safe.py) would leave nothing free.
NO_FAIL_SAFE = {"health.withhold_free_at": "never", "ground.free_confidence": 0.0,
                "ground.free_margin": 0, "ground.mirror_check": False}


def road_frame() -> np.ndarray:
    """Return the drawn street of test_default_weights at this rig's size (road below)."""
    return cv2.resize(road_scene(), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


def test_costmap_and_group_grids_have_the_frame_stamp_and_geometry(rig_factory):
    # random weights are unsure of every pixel: footprints by run alone, so some cells are known
    rig = rig_factory(**{"ground.camera_x": 0.5, "ground.camera_y": 0.2,
                         "ground.camera_height": 1.5, "ground.camera_pitch": 0.3,
                         "ground.footprint_confidence": 0.0, **NO_FAIL_SAFE})
    groups = list(rig.camera.ground.groups.names)
    costmaps = rig.collect(OccupancyGrid, "costmap")
    grid = rig.collect(OccupancyGrid, f"grid/{groups[0]}")
    image_pub, info_pub = camera_publishers(rig)
    send(rig, image_pub, info_pub, 7)
    (costmap,) = costmaps.wait(1, timeout=60)
    (first_group,) = grid.wait(1)
    for msg in (costmap, first_group):
        assert msg.header.frame_id == "base_link" and msg.header.stamp.sec == 7
        assert msg.info.resolution == pytest.approx(0.1)
        assert (msg.info.width, msg.info.height) == (200, 100)  # 20 m ahead, 10 m across
        assert (msg.info.origin.position.x, msg.info.origin.position.y) == pytest.approx(
            (0.5, 0.2 - 5.0))
        values = np.array(msg.data)
        assert len(values) == 200 * 100 and set(np.unique(values)) <= set(range(-1, 101))
        assert (values >= 0).any()  # the camera sees ground: some cells are observed

    # a runtime change applies to the next frame
    (result,) = set_parameters(rig.probe, rig.name, {"ground.resolution": 0.2})
    assert result.successful, result.reason
    send(rig, image_pub, info_pub, 8)
    (second,) = costmaps.wait(1, where=lambda m: m.header.stamp.sec == 8)
    assert second.info.resolution == pytest.approx(0.2)
    assert (second.info.width, second.info.height) == (100, 50)


@pytest.mark.parametrize("values, reason", [
    ({"ground.camera_height": 0.0}, "ground.camera_height"),  # rclpy's range check
    ({"ground.resolution": 0.0}, "ground.resolution"),  # rclpy's range check
    ({"ground.range": 1000.0, "ground.width": 1000.0, "ground.resolution": 0.01},
     "grid of"),
])
def test_bad_ground_values_are_refused_with_the_reason(rig_factory, values, reason):
    rig = rig_factory()
    results = set_parameters(rig.probe, rig.name, values, atomically=True)
    assert not results[0].successful
    assert reason in results[0].reason


def test_a_pitch_that_shows_no_ground_is_refused_once_the_camera_is_known(
        rig_factory):
    rig = rig_factory(**{"ground.camera_pitch": 0.3})
    costmaps = rig.collect(OccupancyGrid, "costmap")
    image_pub, info_pub = camera_publishers(rig)
    send(rig, image_pub, info_pub, 1)
    costmaps.wait(1, timeout=60)
    (result,) = set_parameters(rig.probe, rig.name, {"ground.camera_pitch": -1.2})
    assert not result.successful and "sees no ground" in result.reason


def test_ground_points_and_confidence_only_for_subscribers(rig_factory):
    # the packaged CamVid weights see road in the drawn street's lower half: points to map
    rig = rig_factory(weights=str(default_weights_path()), **{"ground.camera_pitch": 0.3})
    labels = rig.collect(Image, "labels")
    image_pub, info_pub = camera_publishers(rig)
    send(rig, image_pub, info_pub, 1, road_frame())
    labels.wait(1, timeout=60)
    assert rig.camera.ground.mapper.builds == 0  # nobody asked for ground outputs
    assert rig.node.pipeline.computed["confidence"] == 1  # for the health check alone

    points = rig.collect(PointCloud2, "ground_points")
    confidence = rig.collect(Image, "confidence")
    wait_until(lambda: rig.camera.ground.wanted(), message="ground_points subscriber")
    wait_until(lambda: rig.probe.count_subscribers(f"{rig.name}/confidence") == 1,
               message="confidence subscriber")
    for sec in (2, 3):
        send(rig, image_pub, info_pub, sec, road_frame())
        labels.wait(1, where=lambda m, s=sec: m.header.stamp.sec == s)
    (cloud,) = points.wait(1, where=lambda m: m.header.stamp.sec == 2)
    assert cloud.header.frame_id == "base_link" and cloud.width > 0
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb", "label"]
    (conf,) = confidence.wait(1, where=lambda m: m.header.stamp.sec == 2)
    assert (conf.encoding, conf.width, conf.height) == ("mono8", WIDTH, HEIGHT)
    assert rig.camera.ground.mapper.builds == 1  # built once, reused for the second frame
    # ground.mirror_check (default on): the mirrored frame joined each pass once ground outputs
    # were subscribed, not before
    assert rig.node.pipeline.batches == {1: 1, 2: 2}


def test_the_mirror_check_frees_no_cell_the_frame_alone_would_not(rig_factory):
    # the drawn street is no camera frame: the health check would withhold all free space
    rig = rig_factory(weights=str(default_weights_path()), **{
        "ground.camera_pitch": 0.3, "health.withhold_free_at": "never"})
    costmaps = rig.collect(OccupancyGrid, "costmap")
    image_pub, info_pub = camera_publishers(rig)
    wait_until(lambda: rig.camera.ground.wanted(), message="costmap subscriber")
    send(rig, image_pub, info_pub, 1, road_frame())
    (checked,) = costmaps.wait(1, timeout=60)
    (result,) = set_parameters(rig.probe, rig.name, {"ground.mirror_check": False})
    assert result.successful, result.reason
    send(rig, image_pub, info_pub, 2, road_frame())
    (alone,) = costmaps.wait(1, where=lambda m: m.header.stamp.sec == 2)
    checked, alone = np.array(checked.data), np.array(alone.data)
    assert (alone == 0).sum() > 100  # the drawn road is free space
    assert not ((checked == 0) & (alone != 0)).any() and (checked == 0).sum() < (alone == 0).sum()
    np.testing.assert_array_equal(checked == 100, alone == 100)  # blocked is blocked either way
    assert rig.node.pipeline.batches == {2: 1, 1: 1}  # a mirrored pass, then the frame alone


def test_clouds_for_nav2_fields_frame_stamp_size_and_nan_rule(rig_factory):
    rig = rig_factory(weights=str(default_weights_path()),
                      **{"ground.camera_pitch": 0.3, "ground.obstacle_points_height": 0.5,
                         "ground.free_points_height": 0.02, **NO_FAIL_SAFE})
    labels = rig.collect(Image, "labels")
    clouds = {name: rig.collect(PointCloud2, name)
              for name in ("obstacle_points", "free_points", "aligned_points")}
    image_pub, info_pub = camera_publishers(rig)
    wait_until(lambda: all(rig.probe.count_subscribers(f"{rig.name}/{name}") == 1
                           for name in clouds), message="cloud subscribers")
    send(rig, image_pub, info_pub, 4, road_frame())
    (label_msg,) = labels.wait(1, where=lambda m: m.header.stamp.sec == 4, timeout=60)
    got = {name: (msg, points_from_message(msg)) for name, collector in clouds.items()
           for msg in collector.wait(1, where=lambda m: m.header.stamp.sec == 4)}
    for name, (msg, _) in got.items():
        assert msg.header.frame_id == "base_link", name
        assert msg.header.stamp == label_msg.header.stamp, name
        assert [f.name for f in msg.fields] == ["x", "y", "z"], name
    obstacle, free, aligned = (got[n][1] for n in clouds)
    assert len(obstacle) > 0 and (obstacle["z"] == np.float32(0.5)).all()
    assert len(free) > 0 and (free["z"] == np.float32(0.02)).all()
    aligned_msg = got["aligned_points"][0]
    assert (aligned_msg.height, aligned_msg.width) == (label_msg.height, label_msg.width)
    assert not aligned_msg.is_dense
    ids = np.frombuffer(bytes(label_msg.data), np.uint8).reshape(label_msg.height, -1)
    finite = np.isfinite(aligned["x"]).reshape(ids.shape)
    sky = rig.node.pipeline.segmenter.class_names.index("sky")
    assert finite.any() and (ids == sky).any() and not finite[ids == sky].any()
    assert (aligned["z"][finite.ravel()] == 0).all()
    # footprints weigh confidence (ground.footprint_confidence 0.7): computed for the clouds,
    # though nobody subscribes to ~/confidence
    assert rig.node.pipeline.computed["confidence"] >= 1
    assert rig.probe.count_subscribers(f"{rig.name}/confidence") == 0


# ---- class groups from parameters -------------------------------------------------------------

def test_class_groups_from_parameters_name_the_grids(rig_factory):
    """Groups of the user's own names under groups.classes.<name>, roles by group name."""
    rig = rig_factory(**{
        "groups.names": ["road_only", "things"], "groups.classes.road_only": ["road"],
        "groups.classes.things": ["car", "person"], "groups.obstacle_groups": ["things"],
        "groups.free_groups": ["road_only"]})
    groups = rig.camera.ground.groups
    assert groups.names == ("road_only", "things")
    assert (groups.is_obstacle, groups.is_free) == ((False, True), (True, False))
    assert rig.node.get_parameter("groups.classes.things").value == ["car", "person"]
    grid = rig.collect(OccupancyGrid, "grid/road_only")
    image_pub, info_pub = camera_publishers(rig)
    send(rig, image_pub, info_pub, 3)
    (msg,) = grid.wait(1)
    assert msg.header.stamp.sec == 3


@pytest.mark.parametrize("parameters, named", [
    ({"groups.obstacles": ["obstacle"]},
     "parameter groups.obstacles is now called groups.obstacle_groups"),
    ({"costmap.drivable": ["drivable"]},
     "parameter costmap.drivable is now called groups.free_groups"),
    ({"groups.obstacle": ["car"]},
     "parameter groups.obstacle is now called groups.classes.obstacle"),
    ({"groups.names": ["bad-name"]}, "groups.names holds 'bad-name'"),
    ({"groups.classes.obstacle": ["lawn"]}, "names class 'lawn', which the weights do not have"),
    ({"groups.free_groups": ["roads"]}, "name ['roads'], which are not groups"),
])
def test_class_groups_that_cannot_work_stop_start_up_naming_them(rig_factory, parameters, named):
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        rig_factory(**parameters)


def test_a_parameter_the_node_lacks_is_reported(rig_factory, capfd):
    """A typo is a warning, also one that looks like a group parameter (no group 'name')."""
    rig_factory(**{"ground.camera_hieght": 1.5, "groups.name": ["drivable"]})
    err = capfd.readouterr().err
    for typo in ("ground.camera_hieght", "groups.name"):
        assert f"parameter {typo} was given but this node has none of that name" in err
