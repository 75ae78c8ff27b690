"""The segmentation node's ~/adapt service over real DDS: refusals, gathering, the swap, the file.

The node (random weights, engine torch) adapts its BatchNorm statistics to made street frames
while they stream; the tests check the answers of std_srvs/Trigger, /diagnostics, the weights
file written for the next start, that the labels after the swap are those of that file, and that
weights the label-free check finds no better are not swapped in.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")
pytest.importorskip("std_srvs.srv", reason="std_srvs is not installed")

from sensor_msgs.msg import Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from lednet_ros.core.inference.checkpoint import load_weights, read_metadata  # noqa: E402
from lednet_ros.core.inference.segmenter import Segmenter  # noqa: E402
from lednet_ros.core.adaptation.methods import AdaptationSettings  # noqa: E402
from lednet_ros.ros.segmentation_parameters import PARAMETERS  # noqa: E402
from lednet_ros.tools import adapt as adapt_tool  # noqa: E402

from drawn_scenes import exposed_card  # noqa: E402
from ros_helpers import make_image, wait_for_subscribers, wait_until  # noqa: E402


def call(client) -> Trigger.Response:
    """Call a Trigger service (the probe spins in its executor thread) and return the answer."""
    assert client.wait_for_service(timeout_sec=10), "the ~/adapt service did not appear"
    future = client.call_async(Trigger.Request())
    wait_until(future.done, 10, "the ~/adapt answer")
    return future.result()


def status_values(rig, diagnostics) -> dict:
    for array in reversed(diagnostics.messages):
        for status in array.status:
            if status.name == f"{rig.name}: segmentation":
                return {kv.key: kv.value for kv in status.values}
    return {}


def test_the_node_adapts_by_the_defaults_of_the_adapt_tool(capsys):
    """The node's adapt.* defaults are the tool's (its settings written twice: no torch there)."""
    settings = AdaptationSettings()
    for name in ("bn_prior", "bn_depth"):
        assert PARAMETERS[f"adapt.{name}"].default == getattr(settings, name)
    with pytest.raises(SystemExit):
        adapt_tool.main(["--help"])
    assert f"(default {PARAMETERS['adapt.method'].default}:" in capsys.readouterr().out


def test_adapt_gathers_frames_swaps_the_weights_and_writes_them(rig_factory, tmp_path):
    output = tmp_path / "adapted" / "camera.safetensors"
    rig = rig_factory(**{"adapt.frames": 3, "adapt.output": str(output), "adapt.method": "bn",
                         "adapt.bn_prior": 0.0, "adapt.bn_depth": 0.25, "adapt.check_every": 0})
    client = rig.probe.create_client(Trigger, f"{rig.name}/adapt")
    labels = rig.collect(Image, "labels")
    diagnostics = rig.diagnostics()

    refused = call(client)
    assert not refused.success
    namespace = rig.name.rsplit("/", 1)[0]
    assert refused.message.startswith(f"refused: no frames arriving on {namespace}/image")

    publisher = rig.publisher()
    wait_for_subscribers(publisher)
    sent = 0

    def send(rgb):
        nonlocal sent
        publisher.publish(make_image(rgb, "rgb8", stamp=(10 + sent, 0)))
        sent += 1
        labels.wait(sent, timeout=20)

    send(exposed_card(0))
    answer = call(client)
    assert answer.success, answer.message
    assert answer.message == "gathering the next 3 frames, then adapting in the background"
    again = call(client)
    assert not again.success and "already adapting: gathering frames (0/3)" in again.message
    original = rig.node.segmenter
    for seed in (1, 2, 3):
        send(exposed_card(seed))
    wait_until(output.exists, 30, "the adapted weights file")
    wait_until(lambda: rig.node._adapt.live.adaptations == 1, 30, "the adaptation to finish")

    meta = read_metadata(output)
    adaptation = meta.recipe["adaptation"]
    assert adaptation["method"] == "bn" and adaptation["frames"] == 3
    assert adaptation["settings"]["depth"] == 0.25  # the node's parameter reached the method
    assert adaptation["sources"][0]["kind"] == "live topic"
    assert meta.reported_mean_iou is None and meta.metrics == {}

    last = exposed_card(5)
    send(last)  # the worker swaps the adapted segmenter in before this frame
    assert rig.node.segmenter is not original
    expected = Segmenter(*load_weights(output), device="cpu", engine="torch").segment(last)
    got = np.frombuffer(labels.messages[-1].data, np.uint8).reshape(expected.shape)
    np.testing.assert_array_equal(got, expected)
    def reported():
        values = status_values(rig, diagnostics)
        return (values.get("adaptation", "").startswith("adapted from 3 frames")
                and values["adaptation"].endswith("kept: bn, not checked (adapt.check_every 0)")
                and values["frames processed"] == str(sent))

    wait_until(reported, 15, "diagnostics naming the adaptation, all frames processed")


def test_weights_the_check_finds_no_better_are_not_swapped_in(rig_factory, tmp_path):
    # bn_prior 1: the statistics are the loaded weights' own, so the adapted weights are the
    # same weights: not surer on the held-back frames, hence not kept
    output = tmp_path / "never.safetensors"
    rig = rig_factory(**{"adapt.frames": 4, "adapt.method": "bn", "adapt.bn_prior": 1.0,
                         "adapt.check_every": 2, "adapt.output": str(output)})
    client = rig.probe.create_client(Trigger, f"{rig.name}/adapt")
    labels = rig.collect(Image, "labels")
    diagnostics = rig.diagnostics()
    publisher = rig.publisher()
    wait_for_subscribers(publisher)
    publisher.publish(make_image(exposed_card(0), "rgb8", stamp=(10, 0)))
    labels.wait(1, timeout=20)
    original = rig.node.segmenter
    answer = call(client)
    assert answer.success, answer.message
    for seed in range(1, 6):
        publisher.publish(make_image(exposed_card(seed), "rgb8", stamp=(10 + seed, 0)))
        labels.wait(seed + 1, timeout=20)
    wait_until(lambda: rig.node._adapt.live.adaptations == 1, 30, "the adaptation to finish")
    publisher.publish(make_image(exposed_card(9), "rgb8", stamp=(20, 0)))
    labels.wait(7, timeout=20)
    assert rig.node.segmenter is original and not output.exists()

    def reported():
        status = status_values(rig, diagnostics).get("adaptation", "")
        return status.startswith("adapted from 2 frames") and (
            ", not kept, the weights it had stay: bn, not surer on held-back frames: adapted "
            "confidence " in status)

    wait_until(reported, 15, "diagnostics saying the adaptation was not kept and why")
