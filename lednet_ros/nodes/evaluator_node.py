r"""Scores the segmentation node live against a ground-truth label topic.

    ros2 run lednet_ros evaluator_node --ros-args -p report_dir:=eval_live \
        -r labels:=/lednet_segmentation/labels -r ground_truth:=/ground_truth/labels

Subscribes to `labels` (the node's mono8 class ids) and `ground_truth` (mono8 class ids with the
same header stamps as the images), pairs them by stamp in whatever order they arrive, and
accumulates the shared confusion matrix (evaluation.Evaluation). The report (report.json,
report.md, confusion.png in `report_dir`) is written at shutdown and on the `~/write_report`
service (std_srvs/Trigger). Latency is the evaluator's clock at label arrival minus the image
stamp: wall time live, bag time under use_sim_time (as coarse as the /clock rate).
"""

from __future__ import annotations

import sys
from pathlib import Path

import rclpy
from rcl_interfaces.msg import IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from lednet_ros.core.checkpoint import CheckpointError, read_metadata
from lednet_ros.core.evaluation import Evaluation, stamp_nanoseconds, write_report
from lednet_ros.core.processing import ImageFormatError, class_ids_from_message
from lednet_ros.core.segmenter import default_weights_path

RELIABILITIES = {"reliable": ReliabilityPolicy.RELIABLE,
                 "best_effort": ReliabilityPolicy.BEST_EFFORT}
WARNING_PERIOD_S = 5.0


class EvaluatorNode(Node):
    """Pairs labels with ground truth by stamp and writes an evaluation report."""

    def __init__(self, **kwargs):
        super().__init__("lednet_evaluator", **kwargs)
        read_only = dict(read_only=True)
        self.declare_parameter("weights", "", ParameterDescriptor(
            description="Weights the segmentation node runs ('' = packaged); their class names "
                        "and count are the report's.", **read_only))
        self.declare_parameter("report_dir", "lednet_evaluation", ParameterDescriptor(
            description="Folder the report is written to (created if missing).", **read_only))
        self.declare_parameter("max_pending", 100, ParameterDescriptor(
            description="Frames waiting for their partner per side before the oldest is counted "
                        "as unmatched.", integer_range=[IntegerRange(from_value=1,
                                                                     to_value=100000)],
            **read_only))
        self.declare_parameter("qos_reliability", "reliable", ParameterDescriptor(
            description="Reliability of both subscriptions: reliable or best_effort.",
            **read_only))
        self.declare_parameter("qos_depth", 100, ParameterDescriptor(
            description="History depth of both subscriptions.",
            integer_range=[IntegerRange(from_value=1, to_value=10000)], **read_only))
        reliability = self.get_parameter("qos_reliability").value
        if reliability not in RELIABILITIES:
            raise ValueError(f"parameter qos_reliability is {reliability!r}; expected one of "
                             f"{', '.join(RELIABILITIES)}")
        weights = self.get_parameter("weights").value or str(default_weights_path())
        metadata = read_metadata(weights)
        self.report_dir = Path(self.get_parameter("report_dir").value).expanduser().resolve()
        self.evaluation = Evaluation(list(metadata.class_names),
                                     max_pending=self.get_parameter("max_pending").value)
        self.rejected = 0
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST,
                         depth=self.get_parameter("qos_depth").value,
                         reliability=RELIABILITIES[reliability],
                         durability=DurabilityPolicy.VOLATILE)
        self.create_subscription(Image, "labels", self._on_labels, qos)
        self.create_subscription(Image, "ground_truth", self._on_ground_truth, qos)
        self.create_service(Trigger, "~/write_report", self._on_write_report)
        self.get_logger().info(
            f"scoring {self.resolve_topic_name('labels')} against "
            f"{self.resolve_topic_name('ground_truth')} ({len(metadata.class_names)} classes of "
            f"{weights}); report to {self.report_dir}")

    def _class_ids(self, msg: Image, topic: str):
        try:
            return class_ids_from_message(msg)
        except ImageFormatError as error:
            self.rejected += 1
            stamp = f"{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}"
            self.get_logger().warning(f"{topic} message {stamp} ignored: {error}",
                                      throttle_duration_sec=WARNING_PERIOD_S)
            return None

    def _on_labels(self, msg: Image) -> None:
        labels = self._class_ids(msg, "labels")
        if labels is None:
            return
        stamp = stamp_nanoseconds(msg.header.stamp.sec, msg.header.stamp.nanosec)
        now = self.get_clock().now().nanoseconds
        latency_ms = (now - stamp) / 1e6 if now > 0 and stamp > 0 else None
        self.evaluation.add_prediction(stamp, labels, latency_ms)

    def _on_ground_truth(self, msg: Image) -> None:
        labels = self._class_ids(msg, "ground_truth")
        if labels is not None:
            stamp = stamp_nanoseconds(msg.header.stamp.sec, msg.header.stamp.nanosec)
            self.evaluation.add_ground_truth(stamp, labels)

    def summary(self) -> dict:
        summary = self.evaluation.summary()
        summary["frames"]["rejected_messages"] = self.rejected
        summary["source"] = {"mode": "live", "labels": self.resolve_topic_name("labels"),
                             "ground_truth": self.resolve_topic_name("ground_truth")}
        return summary

    def write_report(self) -> tuple[dict, list[Path]]:
        summary = self.summary()
        paths = write_report(self.report_dir, summary, title="LEDNet live evaluation")
        miou = summary["mean_iou"]
        frames = summary["frames"]
        self.get_logger().info(
            f"mIoU {'n/a' if miou is None else f'{100 * miou:.2f}%'} over {frames['matched']} "
            f"frames ({frames['ground_truth_without_prediction']} ground truth and "
            f"{frames['prediction_without_ground_truth']} labels unmatched); "
            f"report in {self.report_dir}")
        return summary, paths

    def _on_write_report(self, request, response):
        try:
            summary, paths = self.write_report()
        except OSError as error:
            response.success, response.message = False, f"cannot write the report: {error}"
            return response
        miou = summary["mean_iou"]
        response.success = True
        response.message = (f"mIoU {'n/a' if miou is None else f'{100 * miou:.2f}%'} over "
                            f"{summary['frames']['matched']} frames: {paths[0]}")
        return response


def main(args=None) -> int:
    node = None
    try:
        with rclpy.init(args=args):
            try:
                node = EvaluatorNode()
            except (CheckpointError, ValueError) as error:
                rclpy.logging.get_logger("lednet_evaluator").fatal(str(error))
                return 1
            try:
                rclpy.spin(node)
            except (KeyboardInterrupt, ExternalShutdownException):
                pass
            finally:
                node.write_report()
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
