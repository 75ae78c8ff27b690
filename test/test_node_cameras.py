"""Several cameras through one segmentation node (parameter cameras), over real DDS.

Each camera reads <name>/image and <name>/camera_info and publishes under ~/<name>/ with its own
frames' headers, ground pose and /diagnostics entries; waiting frames of several cameras go
through the network as one batch.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import CameraInfo, Image

from lednet_ros.ros.parameters import ConfigurationError

from drawn_scenes import sky_road_card
from ros_helpers import (
    make_image, pinhole_camera_info, set_parameters, wait_for_subscribers, wait_until,
)


@pytest.fixture
def two_cameras(rig_factory):
    return rig_factory(cameras=["front", "left"], **{"left.ground.camera_height": 2.0})


def test_each_camera_gets_its_own_labels_with_its_own_header(two_cameras):
    rig = two_cameras
    labels = {name: rig.collect(Image, f"{name}/labels") for name in ("front", "left")}
    publishers = {name: rig.publisher(topic=f"{name}/image") for name in ("front", "left")}
    for publisher in publishers.values():
        wait_for_subscribers(publisher)
    assert rig.probe.count_publishers(f"{rig.name}/labels") == 0  # no single-camera topic
    publishers["front"].publish(make_image(sky_road_card(96, 160), "rgb8", (1, 0), "front_cam"))
    publishers["left"].publish(make_image(sky_road_card(64, 128), "rgb8", (2, 0), "left_cam"))
    front, left = labels["front"].wait(1)[0], labels["left"].wait(1)[0]
    assert (front.header.frame_id, front.header.stamp.sec, front.width) == ("front_cam", 1, 160)
    assert (left.header.frame_id, left.header.stamp.sec, left.width) == ("left_cam", 2, 128)


def test_frames_waiting_on_several_cameras_go_through_the_network_together(two_cameras):
    rig = two_cameras
    node = rig.node
    labels = {name: rig.collect(Image, f"{name}/labels") for name in ("front", "left")}
    publishers = {name: rig.publisher(topic=f"{name}/image") for name in ("front", "left")}
    for publisher in publishers.values():
        wait_for_subscribers(publisher)
    frame = sky_road_card(96, 160)
    with node._adapt._ready_lock:  # the worker takes the first frame, then waits here
        publishers["front"].publish(make_image(frame, "rgb8", (1, 0)))
        wait_until(lambda: node.cameras["front"].stats.snapshot().received == 1)
        time.sleep(0.3)
        publishers["left"].publish(make_image(frame, "rgb8", (2, 0)))
        publishers["front"].publish(make_image(frame, "rgb8", (3, 0)))
        wait_until(lambda: node.cameras["left"].stats.snapshot().received == 1
                   and node.cameras["front"].stats.snapshot().received == 2)
    labels["front"].wait(2)
    labels["left"].wait(1)
    assert node.pipeline.batches == {1: 1, 2: 1}  # the second pass held both cameras' frames
    stamps = [m.header.stamp.sec for m in labels["front"].messages]
    assert stamps == [1, 3] and labels["left"].messages[0].header.stamp.sec == 2
    first, batched = labels["front"].messages
    assert np.array_equal(np.frombuffer(first.data, np.uint8),
                          np.frombuffer(batched.data, np.uint8))  # batching changes no label


def test_each_camera_has_its_pose_diagnostics_and_costmap(two_cameras):
    rig = two_cameras
    node = rig.node
    cameras = node.cameras
    assert cameras["front"].ground.settings.pose.height == node.values["ground.camera_height"]
    assert cameras["left"].ground.settings.pose.height == 2.0
    (result,) = set_parameters(rig.probe, rig.name, {"front.ground.camera_pitch": 0.2})
    assert result.successful
    assert cameras["front"].ground.settings.pose.pitch == 0.2
    assert cameras["left"].ground.settings.pose.pitch == node.values["ground.camera_pitch"]

    costmaps = {name: rig.collect(OccupancyGrid, f"{name}/costmap") for name in cameras}
    diagnostics = rig.diagnostics()
    for name in cameras:
        info = rig.publisher(CameraInfo, f"{name}/camera_info")
        image = rig.publisher(topic=f"{name}/image")
        wait_for_subscribers(image)
        wait_for_subscribers(info)
        info.publish(pinhole_camera_info(160, 96, 100.0, 100.0, 80.0, 48.0))
        wait_until(lambda name=name: cameras[name].camera_info is not None)
        wait_until(lambda name=name: cameras[name].ground.wanted())
        image.publish(make_image(sky_road_card(96, 160), "rgb8", (5, 0)))
        costmaps[name].wait(1)
    assert costmaps["front"].messages[0].info.width > 0

    def entries(msg: DiagnosticArray):
        return {status.name for status in msg.status}

    array = diagnostics.wait(1, where=lambda m: any("left segmentation" in n
                                                    for n in entries(m)))[0]
    names = entries(array)
    for name in cameras:
        assert f"{rig.name}: {name} segmentation" in names
        assert f"{rig.name}: {name} perception health" in names
    status = next(s for s in array.status if s.name == f"{rig.name}: left segmentation")
    values = {kv.key: kv.value for kv in status.values}
    assert values["image topic"] == f"{rig.name.rsplit('/', 1)[0]}/left/image"
    assert values["frames processed"] == "1"


@pytest.mark.parametrize("cameras, problem", [
    (["front", "front"], "cameras names a camera twice"),
    (["front", "2nd"], "cameras holds '2nd'"),
])
def test_bad_camera_lists_are_refused_naming_the_value(rig_factory, cameras, problem):
    with pytest.raises(ConfigurationError, match=problem):
        rig_factory(cameras=cameras)
