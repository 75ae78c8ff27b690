"""The node's depth input over real DDS: pairing, ~/semantic_points, the source it reports.

The geometry is tested in test_depth.py on rendered scenes; here the node wires it: a 16UC1
depth image at half the colour size paired by stamp, the organized semantic cloud with its
fields, NaN where the depth is 0, /diagnostics naming the source of each frame, an unregistered
depth image refused once with the values, and ground.source depth without depth.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")
pytest.importorskip("nav_msgs", reason="nav_msgs is not installed")

from nav_msgs.msg import OccupancyGrid  # noqa: E402
from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from lednet_ros.core.data.classes import CAMVID  # noqa: E402

from drawn_scenes import grainy_road_scene  # noqa: E402
from node_rig import RELIABLE  # noqa: E402
from rendered_scenes import Box, Scene  # noqa: E402
from ros_helpers import (  # noqa: E402
    Collector, make_image, pinhole_camera_info, points_from_message, wait_for_subscribers,
    wait_until,
)

SCENE = Scene(boxes=(Box(x=(4.0, 5.0), y=(-0.5, 0.5), z=(0.0, 1.0)),))  # 480 x 360
NO_FAIL_SAFE = {"health.withhold_free_at": "never", "ground.free_confidence": 0.0,
                "ground.free_margin": 0, "ground.footprint_confidence": 0.0,
                "ground.mirror_check": False}


def camera_info(width=480, height=360) -> CameraInfo:
    camera = SCENE.camera.scaled(width, height)
    return pinhole_camera_info(width, height, camera.fx, camera.fy, camera.cx, camera.cy)


def depth_image(sec, frame_id="camera", half=True):
    """Render the scene's depth as 16UC1 millimetres, at half the colour size.

    0 (no measurement) for the sky and beyond 20 m, as a depth camera's range ends.
    """
    metres, _ = SCENE.render()
    metres[metres > 20.0] = np.nan
    if half:
        metres = metres[::2, ::2]
    millimetres = np.where(np.isfinite(metres), np.round(metres * 1000), 0).astype(np.uint16)
    return make_image(millimetres, "16UC1", stamp=(sec, 0), frame_id=frame_id), metres


@pytest.fixture
def rig(rig_factory):
    rig = rig_factory(**{"ground.camera_height": SCENE.pose.height,
                         "ground.camera_pitch": SCENE.pose.pitch, **NO_FAIL_SAFE})
    rig.pubs = {"image": rig.publisher(), "camera_info": rig.publisher(CameraInfo, "camera_info"),
                "depth": rig.publisher(topic="depth"),
                "depth_camera_info": rig.publisher(CameraInfo, "depth_camera_info")}
    for publisher in rig.pubs.values():
        wait_for_subscribers(publisher)
    rig.pubs["camera_info"].publish(camera_info())
    rig.pubs["depth_camera_info"].publish(camera_info(240, 180))
    wait_until(lambda: rig.camera.camera_info is not None and rig.camera.ground.depth.info
               is not None, message="both camera_infos at the node")
    return rig


def send(rig, sec, depth=True, **depth_options):
    if depth:
        msg, _ = depth_image(sec, **depth_options)
        rig.pubs["depth"].publish(msg)
        wait_until(lambda: rig.camera.ground.depth.pairer.match(sec * 10**9)[0] is not None,
                   message="the depth image at the node")
    rig.pubs["image"].publish(make_image(grainy_road_scene(), "rgb8", stamp=(sec, 0)))


def ground_source(rig):
    return rig.camera.ground.last_source


def test_semantic_points_carry_the_paired_depth_with_labels_and_confidence(rig):
    clouds = rig.collect(PointCloud2, "semantic_points")
    costmaps = rig.collect(OccupancyGrid, "costmap")
    wait_until(lambda: rig.camera.ground.wanted(), message="subscribers")
    send(rig, 5)
    (cloud,) = clouds.wait(1, where=lambda m: m.header.stamp.sec == 5, timeout=60)
    costmaps.wait(1, where=lambda m: m.header.stamp.sec == 5)
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "label", "confidence", "rgb"]
    assert (cloud.height, cloud.width) == (360, 480) and not cloud.is_dense
    assert cloud.header.frame_id == "camera"  # the depth image's (= the image's) frame
    points = points_from_message(cloud).reshape(360, 480)
    _, metres = depth_image(5)
    expected = np.repeat(np.repeat(metres, 2, axis=0), 2, axis=1)  # nearest neighbour
    valid = np.isfinite(expected)
    assert valid.any() and (~valid).any()  # sky: no depth
    np.testing.assert_allclose(points["z"][valid], expected[valid], atol=1e-3)  # millimetres
    assert not np.isfinite(points["z"][~valid]).any()
    assert set(np.unique(points["label"])) <= set(range(len(CAMVID.names)))
    assert (points["confidence"] >= 0).all() and (points["confidence"] <= 1).all()
    assert ground_source(rig).startswith("depth (skew 0.000 s")

    send(rig, 9, depth=False)  # the depth image of 5 s is 4 s away
    costmaps.wait(1, where=lambda m: m.header.stamp.sec == 9)
    assert ground_source(rig) == ("flat ground: no depth within 0.05 s of the frame (nearest "
                                  "4.000 s away)")


def test_unregistered_depth_is_refused_once_with_the_values(rig):
    rosout = Collector(rig.probe, Log, "/rosout", QoSProfile(depth=100))
    costmaps = rig.collect(OccupancyGrid, "costmap", RELIABLE)
    wait_until(lambda: rig.camera.ground.wanted(), message="costmap subscriber")
    for sec in (3, 4):
        send(rig, sec, frame_id="depth_optical")
        costmaps.wait(1, where=lambda m, s=sec: m.header.stamp.sec == s, timeout=60)
    warnings = [m for m in rosout.messages if "depth not used" in m.msg]
    assert len(warnings) == 1
    assert "depth frame_id 'depth_optical' is not the image's 'camera'" in warnings[0].msg
    assert ground_source(rig).startswith("flat ground: depth frame_id 'depth_optical'")


def test_depth_only_without_depth_publishes_no_ground_outputs_and_says_why(rig_factory):
    rig = rig_factory(**{"ground.source": "depth", **NO_FAIL_SAFE})
    costmaps = rig.collect(OccupancyGrid, "costmap")
    labels = rig.collect(Image, "labels")
    image_pub, info_pub = rig.publisher(), rig.publisher(CameraInfo, "camera_info")
    wait_for_subscribers(image_pub)
    wait_for_subscribers(info_pub)
    info_pub.publish(camera_info())
    wait_until(lambda: rig.camera.camera_info is not None, message="camera_info at the node")
    wait_until(lambda: rig.camera.ground.wanted(), message="costmap subscriber")
    image_pub.publish(make_image(grainy_road_scene(), "rgb8", stamp=(2, 0)))
    labels.wait(1, where=lambda m: m.header.stamp.sec == 2, timeout=60)
    wait_until(lambda: "ground.source is depth but no depth image received yet"
               in rig.node.stats.snapshot().last_error, message="the reason in the stats")
    assert not [m for m in costmaps.messages if m.header.stamp.sec == 2]
