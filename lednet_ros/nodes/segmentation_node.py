"""The LEDNet segmentation node: camera images in; labels, masks and occupancy out.

Wiring only: core.runtime reads and segments frames, ros.health_outputs checks them, ros.messages
and ros.ground_outputs (with depth) publish, ros.adapt_service adapts the weights. The image
callback keeps only the newest frame; a worker thread processes it, so services stay answered.
"""

from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float32, Header

from lednet_ros.core.inference.checkpoint import CheckpointError, metrics_summary
from lednet_ros.core.inference.segmenter import Segmenter, default_weights_path
from lednet_ros.core.runtime.images import rgb_from_compressed, rgb_from_message
from lednet_ros.core.runtime.pipeline import Outputs, Pipeline
from lednet_ros.core.runtime.stats import PipelineStats
from lednet_ros.core.runtime.worker import NewestItemWorker
from lednet_ros.msg import ClassInfo, ClassOccupancy
from lednet_ros.ros.adapt_service import AdaptService
from lednet_ros.ros.diagnostics import (
    WARNING_PERIOD_S, InputWatch, diagnostic_array, segmentation_status,
)
from lednet_ros.ros.ground_outputs import GroundOutputs
from lednet_ros.ros.health_outputs import HealthOutputs
from lednet_ros.ros.messages import (
    class_info_message, class_topic_names, image_message, occupancy_message, scaled_camera_info,
    stamp_age,
)
from lednet_ros.ros.parameters import LATCHED, declare, qos, undeclared_overrides, warn_undeclared
from lednet_ros.ros.runner import refuse_start, run_node
from lednet_ros.ros.segmentation_parameters import (
    FIXED_PARAMETERS, PARAMETERS, class_groups, declare_groups, frame_settings, ground_settings,
    health_settings, refuse_renamed,
)

NODE_NAME = "lednet_segmentation"
START_ERRORS = (ParameterException, CheckpointError, ValueError)  # a configuration refused


class SegmentationNode(Node):
    """Segments camera images with LEDNet and publishes labels, masks, occupancy, diagnostics."""

    managed = False  # the lifecycle node (segmentation_lifecycle_node) starts it in steps

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.stats = PipelineStats()
        self._worker, self._rejected_reported, self._inputs = None, 0, []
        if not self.managed:
            try:
                self._configure()
            except START_ERRORS as exc:
                refuse_start(self, exc)
            self._activate()

    def _configure(self) -> None:
        """Read the parameters, load the weights, make the outputs (raises START_ERRORS)."""
        self.values = declare(self, FIXED_PARAMETERS)
        self.settings, ground = frame_settings(self.values), ground_settings(self.values)
        health = health_settings(self.values)
        self.weights_path = self.values["weights"] or str(default_weights_path())
        self.pipeline = Pipeline(Segmenter.from_weights(
            self.weights_path, device=self.values["device"],
            precision=self.values["precision"], engine=self.values["engine"]))
        metadata = self.pipeline.segmenter.metadata
        self.values |= declare_groups(self, metadata.dataset)
        refuse_renamed(undeclared := undeclared_overrides(self), self.values["groups.names"])
        warn_undeclared(self, undeclared)
        self.pipeline.check(self.settings)
        self.ground = GroundOutputs(self, metadata, class_groups(
            self.values, metadata.class_names), ground)
        self.get_logger().info(f"{self.pipeline.describe(self.settings)}; weights "
                               f"{self.weights_path} ({metrics_summary(self.segmenter.metadata)})")
        self.add_on_set_parameters_callback(self._check_change)
        self.add_post_set_parameters_callback(self._apply_change)
        self._input = InputWatch(self, self.stats, self.values["qos_reliability"])
        self._labels_pub = self.create_publisher(Image, "~/labels", 10)
        self._color_mask_pub = self.create_publisher(Image, "~/color_mask", 10)
        self._overlay_pub = self.create_publisher(Image, "~/overlay", 10)
        self._confidence_pub = self.create_publisher(Image, "~/confidence", 10)
        self._occupancy_pub = self.create_publisher(ClassOccupancy, "~/occupancy", 10)
        self._class_pubs = [
            self.create_publisher(Float32, f"~/occupancy/{token}", 10)
            for token in class_topic_names(self.segmenter.class_names)
        ] if self.values["publish_class_topics"] else []
        self._class_info_pub = self.create_publisher(ClassInfo, "~/class_info", LATCHED)
        self._camera_info_pub = self.create_publisher(CameraInfo, "~/camera_info", 10)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.health = HealthOutputs(self, health)
        self._publish_class_info()
        self._adapt = AdaptService(self, self._input)
        self._worker = NewestItemWorker(self._process, name="lednet_worker")

    def _activate(self) -> None:
        """Subscribe to the camera and start the diagnostics timer: frames flow."""
        input_qos = qos(self.values["qos_reliability"], self.values["qos_depth"])
        compressed = self.values["input_compressed"]
        self._read_frame = rgb_from_compressed if compressed else rgb_from_message
        topic = "image/compressed" if compressed else "image"
        self._image_sub = self.create_subscription(
            CompressedImage if compressed else Image, topic, self._on_image, input_qos,
            event_callbacks=SubscriptionEventCallbacks(
                incompatible_qos=self._input.on_incompatible_qos))
        self._input.watch(self._image_sub.topic_name)
        self._camera_info = None  # the newest
        self._inputs = [self._image_sub, self.create_subscription(
            CameraInfo, "camera_info", lambda msg: setattr(self, "_camera_info", msg), input_qos)]
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # runs under use_sim_time without /clock
        self._inputs.append(self.create_timer(1.0, self._on_diagnostics_timer, clock=steady))

    @property
    def segmenter(self) -> Segmenter:
        return self.pipeline.segmenter

    def _check_change(self, parameters) -> SetParametersResult:
        values = {**self.values, **{p.name: p.value for p in parameters}}
        try:
            self.pipeline.check(frame_settings(values))
            self.ground.check(ground_settings(values))
            health_settings(values)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_change(self, parameters) -> None:
        old_size = self.pipeline.input_size(self.settings)
        self.values = {**self.values, **{p.name: p.value for p in parameters}}
        self.settings = frame_settings(self.values)
        self.ground.update(ground_settings(self.values))
        self.health.update(health_settings(self.values))
        new_size = self.pipeline.input_size(self.settings)
        if new_size != old_size:
            self.get_logger().info(f"network input size now {new_size[0]}x{new_size[1]}")
            self._publish_class_info()

    def _on_image(self, msg) -> None:
        self._input.frame_arrived()
        self.stats.count_received(replaced_unprocessed=self._worker.put(msg))

    def _on_diagnostics_timer(self) -> None:
        self._input.check(self.values["no_frames_timeout"])
        self._adapt.check_deadline()
        snap = self.stats.snapshot()
        status = segmentation_status(
            f"{self.get_fully_qualified_name()}: segmentation", self.segmenter,
            self.pipeline.input_size(self.settings), self.weights_path, self._input, snap,
            snap.rejected > self._rejected_reported, adaptation=self._adapt.live.status,
            ground_source=self.ground.last_source)
        self._rejected_reported = snap.rejected
        self._diagnostics_pub.publish(diagnostic_array(
            self.get_clock().now().to_msg(), status,
            self.health.status(str(self.segmenter.device))))

    def _process(self, msg) -> None:
        self.pipeline = self._adapt.swap_in(self.pipeline)  # adapted weights: this frame runs them
        settings = self.settings
        try:
            rgb = self._read_frame(msg, settings.max_image_pixels)
            self._adapt.live.offer(rgb)
            send_confidence = self._confidence_pub.get_subscription_count() > 0
            ground = self.ground.wanted()
            wanted = Outputs(color_mask=self._color_mask_pub.get_subscription_count() > 0,
                             overlay=self._overlay_pub.get_subscription_count() > 0,
                             confidence=True)  # always: the health check reads it
            result = self.pipeline.process(rgb, settings, wanted)
            withhold_free = self.health.check(msg.header, rgb, result.labels,
                                              result.confidence, self.segmenter.class_names)
            self._publish(msg.header, result, wanted, send_confidence)
        except Exception as exc:  # a bad frame is counted and logged; the node keeps running
            if not self.context.ok():
                return  # shutting down: not a frame error
            problem = (str(exc) if isinstance(exc, ValueError)
                       else f"processing failed: {type(exc).__name__}: {exc}")
            self._reject(msg.header, problem)
            return
        self.stats.count_processed(stamp_age(msg.header, self.get_clock()), result.inference_s)
        if ground:
            self.ground.publish_or_warn(msg.header, result.labels, self._camera_info,
                                        result.confidence, withhold_free, self.stats)

    def _publish(self, header: Header, result, wanted: Outputs, send_confidence: bool) -> None:
        self._labels_pub.publish(image_message(result.labels, "mono8", header))
        if wanted.color_mask:  # also made for the overlay alone; sent only when asked for
            self._color_mask_pub.publish(image_message(result.color_mask, "rgb8", header))
        if result.overlay is not None:
            self._overlay_pub.publish(image_message(result.overlay, "rgb8", header))
        if send_confidence:  # also made for the ground outputs alone; sent only when asked for
            self._confidence_pub.publish(image_message(result.confidence, "mono8", header))
        self._occupancy_pub.publish(occupancy_message(
            result.occupancy, self.segmenter.class_names, result.label_size, header))
        for publisher, fraction in zip(self._class_pubs, result.occupancy.fractions):
            publisher.publish(Float32(data=float(fraction)))
        info = self._camera_info
        if info is not None:
            source = (info.width, info.height) if info.width and info.height else result.image_size
            self._camera_info_pub.publish(
                scaled_camera_info(info, source, result.label_size, header))

    def _publish_class_info(self) -> None:
        header = Header(stamp=self.get_clock().now().to_msg())
        self._class_info_pub.publish(class_info_message(
            self.segmenter.metadata, self.weights_path, self.pipeline.input_size(self.settings),
            header))

    def _reject(self, header: Header, problem: str) -> None:
        stamp = f"{header.stamp.sec}.{header.stamp.nanosec:09d}"
        error = f"frame {stamp} ({header.frame_id or 'no frame_id'}) dropped: {problem}"
        self.stats.count_rejected(error)
        self.get_logger().warning(error, throttle_duration_sec=WARNING_PERIOD_S)

    def destroy_node(self):
        """Stop the worker (it finishes its frame), then destroy the node."""
        if self._worker is not None:
            self._worker.stop()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(SegmentationNode, PARAMETERS, __doc__, args,
                    "segmentation_node")


if __name__ == "__main__":
    sys.exit(main())
