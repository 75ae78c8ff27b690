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
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from lednet_ros.core.evaluation.scoring import Evaluation, stamp_nanoseconds, write_report
from lednet_ros.core.inference.checkpoint import CheckpointError, read_metadata
from lednet_ros.core.inference.segmenter import default_weights_path
from lednet_ros.core.runtime.images import ImageFormatError, class_ids_from_message
from lednet_ros.ros.diagnostics import WARNING_PERIOD_S
from lednet_ros.ros.parameters import RELIABILITY, Spec, declare, qos
from lednet_ros.ros.runner import refuse_start, run_node

PARAMETERS = {
    "weights": Spec("", "Weights the segmentation node runs ('' = packaged); their class names "
                    "and count are the report's.", read_only=True),
    "report_dir": Spec("lednet_evaluation", "Folder the report is written to (created if "
                       "missing).", read_only=True),
    "max_pending": Spec(100, "Frames waiting for their partner per side before the oldest is "
                        "counted as unmatched.", read_only=True, integers=(1, 100000)),
    "qos_reliability": Spec("reliable", "Reliability of both subscriptions: reliable or "
                            "best_effort.", read_only=True, choices=tuple(RELIABILITY)),
    "qos_depth": Spec(100, "History depth of both subscriptions.", read_only=True,
                      integers=(1, 10000)),
}


class EvaluatorNode(Node):
    """Pairs labels with ground truth by stamp and writes an evaluation report."""

    def __init__(self, **kwargs):
        super().__init__("lednet_evaluator", **kwargs)
        self.log_name = self.get_name()  # for finish(), which runs after the node is destroyed
        try:
            values = declare(self, PARAMETERS)
            weights = values["weights"] or str(default_weights_path())
            metadata = read_metadata(weights)
        except (ParameterException, CheckpointError, ValueError) as exc:
            refuse_start(self, exc)
        self.report_dir = Path(values["report_dir"]).expanduser().resolve()
        self.evaluation = Evaluation(list(metadata.class_names), max_pending=values["max_pending"])
        self.rejected = 0
        self.topics = {name: self.resolve_topic_name(name) for name in ("labels", "ground_truth")}
        input_qos = qos(values["qos_reliability"], values["qos_depth"])
        self.create_subscription(Image, "labels", self._on_labels, input_qos)
        self.create_subscription(Image, "ground_truth", self._on_ground_truth, input_qos)
        self.create_service(Trigger, "~/write_report", self._on_write_report)
        self.get_logger().info(
            f"scoring {self.topics['labels']} against {self.topics['ground_truth']} "
            f"({len(metadata.class_names)} classes of {weights}); report to {self.report_dir}")

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
        summary["source"] = {"mode": "live", **self.topics}
        return summary

    def write_report(self, logger=None) -> tuple[dict, list[Path]]:
        """Write the report of what was scored so far; log its mIoU and where it is."""
        summary = self.summary()
        paths = write_report(self.report_dir, summary, title="LEDNet live evaluation")
        miou = summary["mean_iou"]
        frames = summary["frames"]
        (logger or self.get_logger()).info(
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


    def finish(self) -> int:
        """Write the final report at exit (the node destroyed, so nothing goes to /rosout).

        Returns 1 when not a single frame was scored, so that no empty report passes for a
        result; 0 otherwise.
        """
        logger = rclpy.logging.get_logger(self.log_name)
        if self.evaluation.summary()["frames"]["matched"] == 0:
            logger.error(f"no frame was scored: no labels on {self.topics['labels']} matched "
                         f"ground truth on {self.topics['ground_truth']} by stamp; no report "
                         "written")
            return 1
        self.write_report(logger)
        return 0


def main(args=None) -> int:
    return run_node(EvaluatorNode, PARAMETERS, __doc__, args, "evaluator_node")


if __name__ == "__main__":
    sys.exit(main())
