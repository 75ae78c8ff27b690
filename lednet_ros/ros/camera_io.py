"""One camera of the segmentation node: its subscriptions, outputs, statistics and diagnostics.

With one camera (parameter ``cameras`` empty) the topics are those of a single-camera node:
``image``, ``camera_info``, ``depth`` in; ``~/labels``, ``~/costmap``, ``~/health``, ... out.
With ``cameras: [front, left]`` each camera has its own under its name: ``front/image``,
``front/camera_info``, ``front/depth`` in; ``~/front/labels``, ``~/front/costmap``,
``~/front/health``, ... out, each with its own frames' headers, its ground pose
(``front.ground.camera_*``) and its /diagnostics entries. The node's worker segments the waiting
frames of all cameras in one batch and hands each camera its result (:meth:`CameraIO.finish`).
"""

from __future__ import annotations

from rclpy.event_handler import SubscriptionEventCallbacks
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float32, Header

from lednet_ros.core.runtime.images import rgb_from_compressed, rgb_from_message
from lednet_ros.core.runtime.pipeline import Outputs
from lednet_ros.core.runtime.stats import PipelineStats
from lednet_ros.msg import ClassOccupancy
from lednet_ros.ros.diagnostics import WARNING_PERIOD_S, InputWatch, segmentation_status
from lednet_ros.ros.ground_outputs import GroundOutputs
from lednet_ros.ros.health_outputs import HealthOutputs
from lednet_ros.ros.messages import (
    class_topic_names, image_message, occupancy_message, scaled_camera_info, stamp_age,
)


class CameraIO:
    """Camera ``name`` ('' for a single camera) on ``node`` (a SegmentationNode, configured)."""

    def __init__(self, node, name: str, groups, ground_settings, health_settings):
        self.node, self.name = node, name
        self.inputs, self.outputs = (f"{name}/", f"~/{name}/") if name else ("", "~/")
        self.stats = PipelineStats()
        self.input = InputWatch(node, self.stats, node.values["qos_reliability"])
        self.camera_info = None  # the newest
        self._rejected_reported = 0
        segmenter = node.pipeline.segmenter
        self.publishers = {name: node.create_publisher(kind, self.outputs + name, 10)
                           for name, kind in (
            ("labels", Image), ("color_mask", Image), ("overlay", Image), ("confidence", Image),
            ("occupancy", ClassOccupancy), ("camera_info", CameraInfo))}
        self.class_pubs = [
            node.create_publisher(Float32, f"{self.outputs}occupancy/{token}", 10)
            for token in class_topic_names(segmenter.class_names)
        ] if node.values["publish_class_topics"] else []
        self.ground = GroundOutputs(node, segmenter.metadata, groups, ground_settings,
                                    self.stats, self.inputs, self.outputs)
        self.health = HealthOutputs(node, health_settings, self.outputs, name)

    def subscribe(self, on_image, input_qos) -> list:
        """Subscribe to the camera's image and camera_info; return the subscriptions."""
        compressed = self.node.values["input_compressed"]
        self.read = rgb_from_compressed if compressed else rgb_from_message
        topic = self.inputs + ("image/compressed" if compressed else "image")
        image = self.node.create_subscription(
            CompressedImage if compressed else Image, topic, on_image, input_qos,
            event_callbacks=SubscriptionEventCallbacks(
                incompatible_qos=self.input.on_incompatible_qos))
        self.input.watch(image.topic_name)
        info = self.node.create_subscription(
            CameraInfo, self.inputs + "camera_info",
            lambda msg: setattr(self, "camera_info", msg), input_qos)
        return [image, info]

    def wanted(self) -> Outputs:
        """Return the optional outputs subscribed to.

        The confidence always (health reads it); the mirrored frame's confidence for
        subscribed ground outputs with ground.mirror_check.
        """
        return Outputs(color_mask=self.publishers["color_mask"].get_subscription_count() > 0,
                       overlay=self.publishers["overlay"].get_subscription_count() > 0,
                       confidence=True, mirror_confidence=self.ground.settings.mirror_check
                       and self.ground.wanted())

    def finish(self, msg, rgb, result, wanted: Outputs) -> None:
        """Check the frame's health, publish its results, map its ground outputs."""
        node, header = self.node, msg.header
        ground = self.ground.wanted()
        withhold_free = self.health.check(header, rgb, result.labels, result.confidence,
                                          node.segmenter.class_names)
        self._publish(header, result, wanted)
        self.stats.count_processed(stamp_age(header, node.get_clock()), result.inference_s)
        if ground:
            self.ground.publish_or_warn(header, result.labels, self.camera_info,
                                        result.confidence, withhold_free, self.stats,
                                        result.mirror_confidence)

    def _publish(self, header: Header, result, wanted: Outputs) -> None:
        publish, class_names = self.publishers, self.node.segmenter.class_names
        publish["labels"].publish(image_message(result.labels, "mono8", header))
        if wanted.color_mask:  # also made for the overlay alone; sent only when asked for
            publish["color_mask"].publish(image_message(result.color_mask, "rgb8", header))
        if result.overlay is not None:
            publish["overlay"].publish(image_message(result.overlay, "rgb8", header))
        if publish["confidence"].get_subscription_count():  # made for health and ground anyway
            publish["confidence"].publish(image_message(result.confidence, "mono8", header))
        publish["occupancy"].publish(occupancy_message(
            result.occupancy, class_names, result.label_size, header))
        for publisher, fraction in zip(self.class_pubs, result.occupancy.fractions):
            publisher.publish(Float32(data=float(fraction)))
        info = self.camera_info
        if info is not None:
            source = (info.width, info.height) if info.width and info.height else result.image_size
            publish["camera_info"].publish(
                scaled_camera_info(info, source, result.label_size, header))

    def reject(self, header: Header, problem: str) -> None:
        """Count and log (throttled) a frame that gave no labels, naming it and why."""
        stamp = f"{header.stamp.sec}.{header.stamp.nanosec:09d}"
        camera = f"camera {self.name}: " if self.name else ""
        error = f"{camera}frame {stamp} ({header.frame_id or 'no frame_id'}) dropped: {problem}"
        self.stats.count_rejected(error)
        self.node.get_logger().warning(error, throttle_duration_sec=WARNING_PERIOD_S)

    def statuses(self, input_size, **more: str) -> list:
        """Return the camera's /diagnostics entries: its pipeline and its perception health."""
        node, snap = self.node, self.stats.snapshot()
        camera = f"{self.name} " if self.name else ""
        status = segmentation_status(
            f"{node.get_fully_qualified_name()}: {camera}segmentation", node.segmenter,
            input_size, node.weights_path, self.input, snap,
            snap.rejected > self._rejected_reported, ground_source=self.ground.last_source,
            **more)
        self._rejected_reported = snap.rejected
        return [status, self.health.status(str(node.segmenter.device))]
