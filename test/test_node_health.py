"""The node's perception health over real DDS: ~/health, /diagnostics and the withheld costmap.

The checks themselves are tested in test_fail_safe.py; here the node wires them: each frame's
~/health with its stamp, level and reasons, the costmap of a flagged frame calling nothing free
while its labels still go out, the /diagnostics entry, and runtime changes of the policy.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")
pytest.importorskip("nav_msgs", reason="nav_msgs is not installed")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from nav_msgs.msg import OccupancyGrid  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from lednet_ros.core.data.degradations import degrade  # noqa: E402
from lednet_ros.core.inference.segmenter import default_weights_path  # noqa: E402

from skips import skip_without_built_messages  # noqa: E402

skip_without_built_messages()

from lednet_ros.msg import PerceptionHealth  # noqa: E402

from drawn_scenes import grainy_road_scene  # noqa: E402
from ros_helpers import (  # noqa: E402
    make_image, pinhole_camera_info, set_parameters, wait_for_subscribers, wait_until,
)

WIDTH, HEIGHT = 480, 360


def camera_info() -> CameraInfo:
    """Return a pinhole camera for 480 x 360 frames: 90 degrees across."""
    return pinhole_camera_info(WIDTH, HEIGHT, 240.0, 240.0, 240.0, 180.0)


@pytest.fixture
def rig(rig_factory):
    """Start a node: the packaged weights, default health settings, a camera 1.5 m up."""
    rig = rig_factory(weights=str(default_weights_path()),
                      **{"ground.camera_height": 1.5, "ground.camera_pitch": 0.3})
    rig.image_pub, info_pub = rig.publisher(), rig.publisher(CameraInfo, "camera_info")
    wait_for_subscribers(rig.image_pub)
    wait_for_subscribers(info_pub)
    info_pub.publish(camera_info())
    wait_until(lambda: rig.camera.camera_info is not None, message="camera_info at the node")
    return rig


def send(rig, rgb, sec):
    rig.image_pub.publish(make_image(rgb, "rgb8", stamp=(sec, 0)))


def at(sec):
    return lambda msg: msg.header.stamp.sec == sec


def test_a_flagged_frame_gets_no_free_space_but_keeps_its_labels(rig):
    health = rig.collect(PerceptionHealth, "health")
    costmaps = rig.collect(OccupancyGrid, "costmap")
    labels = rig.collect(Image, "labels")
    wait_until(lambda: rig.camera.ground.wanted(), message="costmap subscriber")
    clean = grainy_road_scene()
    send(rig, clean, 1)
    (ok,) = health.wait(1, where=at(1), timeout=60)
    assert ok.level == PerceptionHealth.OK and list(ok.reasons) == [] and not ok.free_withheld
    assert "unsure share" in ok.figure_names and len(ok.figure_values) == len(ok.figure_names)
    assert list(ok.class_names) == rig.node.segmenter.class_names
    assert sum(ok.class_shares) == pytest.approx(1.0, abs=1e-3)
    (free_costmap,) = costmaps.wait(1, where=at(1))
    assert (np.array(free_costmap.data) == 0).any()  # the road ahead is free

    send(rig, degrade(clean, "dark"), 2)
    (dark,) = health.wait(1, where=at(2))
    assert dark.level == PerceptionHealth.ERROR and dark.free_withheld
    assert dark.reasons[0].startswith("dark: mean luma")
    (withheld,) = costmaps.wait(1, where=at(2))
    assert not (np.array(withheld.data) == 0).any()  # nothing free: unknown (or blocked)
    labels.wait(1, where=at(2))  # the labels still go out

    statuses = rig.diagnostics()
    name = f"{rig.name}: perception health"
    status = wait_until(lambda: next(
        (s for array in statuses.messages for s in array.status
         if s.name == name and s.level == DiagnosticStatus.ERROR), None),
        timeout=15, message="an ERROR perception health status")
    values = {kv.key: kv.value for kv in status.values}
    assert status.message.startswith("ERROR: dark") and values["free space withheld"] == "true"
    assert values["frames ok"] == "1" and values["frames error"] == "1"


def test_the_policy_and_thresholds_change_at_run_time(rig):
    health = rig.collect(PerceptionHealth, "health")
    (result,) = set_parameters(rig.probe, rig.name, {"health.withhold_free_at": "never"})
    assert result.successful, result.reason
    send(rig, degrade(grainy_road_scene(), "fog"), 3)
    (fog,) = health.wait(1, where=at(3), timeout=60)
    assert fog.level == PerceptionHealth.ERROR and not fog.free_withheld

    results = set_parameters(rig.probe, rig.name, {"health.unsure_error": 0.1})
    assert not results[0].successful
    assert "health.unsure_error is 0.1, below health.unsure_warn 0.35" in results[0].reason


def test_the_unsure_thresholds_default_to_the_weights_reference(rig_factory, random_weights,
                                                                tmp_path):
    import dataclasses
    import shutil

    from lednet_ros.core.inference.checkpoint import read_metadata
    from lednet_ros.core.inference.onnx_cache import rewrite_metadata
    from lednet_ros.core.runtime.health import HEALTH_REFERENCE, reference_record

    weights = tmp_path / "referenced.safetensors"
    shutil.copy(random_weights, weights)
    metadata = read_metadata(weights)
    rewrite_metadata(weights, dataclasses.replace(metadata, metrics={
        **metadata.metrics, HEALTH_REFERENCE: reference_record([0.05, 0.1], 0.7, "made")}))
    referenced = rig_factory(weights=str(weights))
    given = rig_factory(weights=str(weights), **{"health.unsure_warn": 0.3})
    plain = rig_factory()  # random weights: no reference
    for rig, warn, error in ((referenced, 0.15, 0.3), (given, 0.3, 0.3), (plain, 0.35, 0.5)):
        values = [rig.node.get_parameter(f"health.unsure_{n}").value for n in ("warn", "error")]
        assert values == [warn, error], rig.name
        settings = rig.node.first_camera.health.monitor.settings  # what the frames are checked by
        assert (settings.unsure_warn, settings.unsure_error) == (warn, error)
