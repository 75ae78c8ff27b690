"""Live evaluation over real DDS: bags replayed into the segmentation node and the evaluator node.

The player is this package's (rclpy + rosbags) unless LEDNET_BAG_PLAY names another command taking
`<bag> --clock --rate R --delay S`, e.g. LEDNET_BAG_PLAY="ros2 bag play" on a ROS install: the
tests rely only on ROS behaviour (topics, stamps, /clock), not on the player.
"""

from __future__ import annotations

import json
import os
import shlex
import sys

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed")
try:
    from lednet_ros.nodes.evaluator_node import EvaluatorNode
    from lednet_ros.nodes.segmentation_node import NODE_NAME, SegmentationNode
except ImportError as exc:
    pytest.skip(f"lednet_ros nodes not importable ({exc}): build with colcon and source "
                "install/setup.bash", allow_module_level=True)

from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from lednet_ros.core.data.bags import BagTopics, read_frames, write_bag  # noqa: E402
from lednet_ros.core.data.datasets import CamVid  # noqa: E402
from lednet_ros.core.evaluation.metrics import ConfusionMatrix  # noqa: E402
from lednet_ros.core.evaluation.scoring import REPORT_FILES  # noqa: E402
from lednet_ros.core.inference.segmenter import Segmenter, default_weights_path  # noqa: E402
from lednet_ros.tools.evaluate_bag import evaluate_bag  # noqa: E402

from drawn_scenes import MADE_SIZE, made_frames, perfect_bag  # noqa: E402
from node_rig import next_namespace  # noqa: E402
from ros_helpers import (  # noqa: E402
    NodeProcess, make_image, node_command, ros_context, run_process, spinning,
    wait_for_subscribers, wait_until,
)

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def namespaced_topics() -> BagTopics:
    namespace = next_namespace()
    return BagTopics(f"{namespace}/image", f"{namespace}/camera_info",
                     f"{namespace}/ground_truth")


def play_command(bag, rate: float) -> list[str]:
    """Return the player's command.

    Ours waits for a subscriber on every topic (DDS delivers nothing published before
    discovery); `ros2 bag play` has only --delay for that.
    """
    player = os.environ.get("LEDNET_BAG_PLAY")
    if player:
        return shlex.split(player) + [str(bag), "--clock", "--rate", str(rate), "--delay", "3"]
    return [sys.executable, "-m", "lednet_ros.tools.bag_player", str(bag), "--clock", "--rate",
            str(rate), "--wait-for-subscribers", "20", "--delay", "0.5"]


def evaluate_live(context, tmp_path, bag, weights, topics: BagTopics, rate: float, **node_params):
    """Replay ``bag`` into a segmentation node and the evaluator (both on sim time).

    The report is written through the evaluator's ~/write_report service.
    """
    namespace = topics.image.rsplit("/", 1)[0]
    params = {"weights": str(weights), "use_sim_time": True, "qos_reliability": "reliable",
              **node_params}
    node = SegmentationNode(context=context, namespace=namespace,
                            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    evaluator = EvaluatorNode(
        context=context, namespace=namespace,
        parameter_overrides=[Parameter("weights", value=str(weights)),
                             Parameter("use_sim_time", value=True),
                             Parameter("report_dir", value=str(tmp_path / "live"))],
        cli_args=["--ros-args", "-r", f"labels:={namespace}/{NODE_NAME}/labels",
                  "-r", f"ground_truth:={topics.ground_truth}"])
    probe = rclpy.create_node("probe", namespace=namespace, context=context)
    client = probe.create_client(Trigger, f"{namespace}/lednet_evaluator/write_report")
    with spinning(context, node, evaluator, probe):
        played = run_process(play_command(bag, rate), cwd=tmp_path, timeout=120)
        assert played.returncode == 0, played.stdout + played.stderr
        total = sum(1 for f in read_frames(bag, topics) if f.kind == "image")
        frames = evaluator.evaluation.summary()["frames"]
        wait_until(lambda: evaluator.summary()["frames"]["matched"]
                   + evaluator.summary()["frames"]["ground_truth_without_prediction"] >= total,
                   timeout=20, message=f"all {total} frames accounted for ({frames})")
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(Trigger.Request())
        wait_until(future.done, message="write_report reply")
        assert future.result().success, future.result().message
    return json.loads((tmp_path / "live" / "report.json").read_text()), total


def test_live_replay_of_a_perfect_model_agrees_with_offline(tmp_path, context,
                                                            small_shipped_segmenter):
    segmenter = small_shipped_segmenter
    topics = namespaced_topics()
    perfect_bag(tmp_path / "bag", segmenter, made_frames(6), topics=topics)
    report, total = evaluate_live(context, tmp_path, tmp_path / "bag", default_weights_path(),
                                  topics, rate=0.5, engine="torch", input_width=MADE_SIZE[0],
                                  input_height=MADE_SIZE[1])
    frames = report["frames"]
    assert frames["matched"] >= 3, frames
    assert frames["matched"] + frames["ground_truth_without_prediction"] == total
    assert frames["prediction_without_ground_truth"] == 0 and frames["duplicates"] == 0
    assert report["mean_iou"] == 1.0 and report["pixel_accuracy"] == 1.0
    assert report["latency_ms"]["count"] == frames["matched"]
    assert report["latency_ms"]["max"] >= 0
    assert all((tmp_path / "live" / name).is_file() for name in REPORT_FILES)
    offline = evaluate_bag(tmp_path / "bag", segmenter, topics,
                           stamps=set(report["matched_stamps"])).summary()
    assert offline["confusion_matrix"] == report["confusion_matrix"]


def test_live_camvid_replay_agrees_with_offline(tmp_path, context, camvid_root):
    dataset = CamVid(camvid_root, "test")
    topics = namespaced_topics()
    write_bag(tmp_path / "bag", (dataset.load(i) for i in (0, 50, 100)), topics=topics,
              storage="sqlite3")
    report, total = evaluate_live(context, tmp_path, tmp_path / "bag", default_weights_path(),
                                  topics, rate=0.25)
    assert report["frames"]["matched"] >= 2, report["frames"]
    offline = evaluate_bag(tmp_path / "bag", Segmenter.from_weights(None), topics,
                           stamps=set(report["matched_stamps"])).summary()
    assert offline["confusion_matrix"] == report["confusion_matrix"]
    assert report["mean_iou"] > 0.3


def test_dropped_and_reordered_frames_are_counted_not_mispaired(tmp_path, context,
                                                               random_weights):
    namespace = next_namespace()
    evaluator = EvaluatorNode(
        context=context, namespace=namespace,
        parameter_overrides=[Parameter("weights", value=str(random_weights)),
                             Parameter("report_dir", value=str(tmp_path / "report"))],
        cli_args=["--ros-args", "-r", f"labels:={namespace}/{NODE_NAME}/labels"])
    probe = rclpy.create_node("probe", namespace=namespace, context=context)
    labels_pub = probe.create_publisher(Image, f"{namespace}/{NODE_NAME}/labels", RELIABLE)
    truth_pub = probe.create_publisher(Image, "ground_truth", RELIABLE)
    rng = np.random.default_rng(3)
    truth = {s: rng.integers(0, 19, (12, 16)).astype(np.uint8) for s in range(1, 11)}
    predictions = {s: np.where(rng.random((12, 16)) < 0.7, t, rng.integers(0, 19, (12, 16)))
                   .astype(np.uint8) for s, t in truth.items()}
    predictions[42] = truth[1]  # labels for a frame that has no ground truth
    sent = [s for s in rng.permutation(list(predictions)) if s not in (3, 7)]  # 3, 7 dropped
    with spinning(context, evaluator, probe):
        wait_for_subscribers(labels_pub)
        wait_for_subscribers(truth_pub)
        for stamp in sent[:5]:
            labels_pub.publish(make_image(predictions[stamp], "mono8", stamp=(int(stamp), 0)))
        for stamp, label in truth.items():
            truth_pub.publish(make_image(label, "mono8", stamp=(stamp, 0)))
        for stamp in sent[5:] + [5]:  # 5 again: a duplicate
            labels_pub.publish(make_image(predictions[stamp], "mono8", stamp=(int(stamp), 0)))
        wait_until(lambda: evaluator.summary()["frames"]["matched"] == 8
                   and evaluator.summary()["frames"]["duplicates"] == 1,
                   message="8 pairs and a duplicate")
        summary = evaluator.summary()
    reference = ConfusionMatrix(19)
    for stamp in truth:
        if stamp not in (3, 7):
            reference.update(truth[stamp], predictions[stamp])
    assert summary["confusion_matrix"] == reference.matrix.tolist()
    assert summary["frames"]["ground_truth_without_prediction"] == 2
    assert summary["frames"]["prediction_without_ground_truth"] == 1
    assert sorted(s // 1_000_000_000 for s in summary["matched_stamps"]) == \
        [1, 2, 4, 5, 6, 8, 9, 10]


def test_evaluator_process_writes_its_report_at_shutdown(tmp_path, random_weights):
    namespace = next_namespace()
    command = node_command("lednet_ros.nodes.evaluator_node",
                           {"weights": random_weights, "report_dir": tmp_path / "report"},
                           ros_args=["-r", f"__ns:={namespace}"])
    with NodeProcess(command, tmp_path) as process, ros_context() as ctx:
        probe = rclpy.create_node("probe", namespace=namespace, context=ctx)
        labels_pub = probe.create_publisher(Image, "labels", RELIABLE)
        truth_pub = probe.create_publisher(Image, "ground_truth", RELIABLE)
        with spinning(ctx, probe):
            wait_for_subscribers(labels_pub)
            wait_for_subscribers(truth_pub)
            label = np.arange(12, dtype=np.uint8).reshape(3, 4)
            for stamp in (1, 2):
                labels_pub.publish(make_image(label, "mono8", stamp=(stamp, 0)))
                truth_pub.publish(make_image(label, "mono8", stamp=(stamp, 0)))
            labels_pub.publish(make_image(label, "mono16", stamp=(3, 0)))
            wait_until(lambda: "mono16" in process.output(), message="bad labels refused")
        assert process.stop() == 0, process.output()
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["frames"]["matched"] == 2 and report["frames"]["rejected_messages"] == 1
    assert report["pixel_accuracy"] == 1.0
