"""The LEDNet segmentation node: camera images in; class labels, masks and occupancy out.

A thin adapter: lednet_ros.ros.messages converts messages, lednet_ros.core.segmenter runs the network,
lednet_ros.core.processing builds masks and occupancy. The subscription callback only keeps the newest
frame; a worker thread segments it, so parameter services answer while a frame is processed.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import cv2
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult,
)
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind,
)
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float32, Header

from lednet_ros.msg import ClassInfo, ClassOccupancy

from lednet_ros.core.checkpoint import CheckpointError, metrics_summary
from lednet_ros.core.stats import PipelineStats, format_ms
from lednet_ros.core.engines import ENGINES
from lednet_ros.core.processing import (
    DEFAULT_MAX_PIXELS, ImageFormatError, class_occupancy, colorize, overlay,
)
from lednet_ros.ros.messages import (
    class_info_message, class_topic_names, image_message, occupancy_message, rgb_from_compressed,
    rgb_from_image, scaled_camera_info,
)
from lednet_ros.core.segmenter import (
    MAX_INPUT_SIDE, PRECISIONS, Segmenter, check_input_size, default_weights_path,
)

NODE_NAME = "lednet_segmentation"
OUTPUT_RESOLUTIONS = ("original", "network")
QOS_RELIABILITIES = {"best_effort": ReliabilityPolicy.BEST_EFFORT,
                     "reliable": ReliabilityPolicy.RELIABLE}
MAX_GRID = 64
WARNING_PERIOD_S = 5.0
TRANSPORT_ADVICE = (
    "check (1) QoS: the publisher's reliability must suit this subscription's qos_reliability "
    "'{reliability}' (a best_effort publisher cannot serve a reliable subscription); "
    "(2) large frames: the publishing process (the camera driver) must load the Fast DDS profile "
    "config/fastdds_shm.xml too (FASTDDS_DEFAULT_PROFILES_FILE); (3) or use a compressed image "
    "topic with input_compressed:=true"
)


class ConfigurationError(ValueError):
    """A start-up setting the node cannot run with; the message names the value."""


def _describe(description: str, *, read_only: bool = False, integers=None, floats=None):
    """A ParameterDescriptor; ``integers`` / ``floats`` are (low, high) inclusive ranges."""
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if integers is not None:
        descriptor.integer_range = [IntegerRange(from_value=integers[0], to_value=integers[1])]
    if floats is not None:
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=floats[0], to_value=floats[1])
        ]
    return descriptor


PARAMETERS = {
    "weights": ("", _describe(
        "Path of a LEDNet weights file (.safetensors with metadata); '' = the packaged CamVid "
        "weights. Restart to change.", read_only=True)),
    "device": ("auto", _describe(
        "Inference device: auto (cuda if available, else cpu), cpu, cuda or cuda:N.",
        read_only=True)),
    "precision": ("fp32", _describe("fp32, or fp16 (CUDA only).", read_only=True)),
    "engine": ("auto", _describe(
        "Inference engine: auto (the fastest: onnxruntime on CPU where installed, else "
        "torch_fused; cuda_graph on CUDA), torch, torch_fused, channels_last, compile, "
        "cuda_graph (CUDA), onnxruntime (CPU) or tensorrt (CUDA, onnxruntime-gpu).",
        read_only=True)),
    "input_width": (0, _describe(
        "Network input width in pixels; 0 = the weights' training width. Changeable at runtime.",
        integers=(0, MAX_INPUT_SIDE))),
    "input_height": (0, _describe(
        "Network input height in pixels; 0 = the weights' training height. Changeable at runtime.",
        integers=(0, MAX_INPUT_SIDE))),
    "output_resolution": ("original", _describe(
        "Size of labels, colour mask and overlay: original (the input image's) or network "
        "(the network input's).")),
    "overlay_alpha": (0.5, _describe(
        "Weight of the colour mask in the overlay, 0 (image only) to 1 (mask only).",
        floats=(0.0, 1.0))),
    "grid_rows": (3, _describe(
        "Rows of the occupancy region grid.", integers=(1, MAX_GRID))),
    "grid_cols": (3, _describe(
        "Columns of the occupancy region grid.", integers=(1, MAX_GRID))),
    "publish_class_topics": (False, _describe(
        "Also publish each class's pixel fraction on ~/occupancy/<class> (std_msgs/Float32).",
        read_only=True)),
    "input_compressed": (False, _describe(
        "Subscribe to image/compressed (sensor_msgs/CompressedImage) instead of image.",
        read_only=True)),
    "qos_reliability": ("best_effort", _describe(
        "Reliability of the image and camera_info subscriptions: best_effort (sensor data) or "
        "reliable.", read_only=True)),
    "qos_depth": (1, _describe(
        "History depth of the image and camera_info subscriptions.", read_only=True,
        integers=(1, 1000))),
    "max_image_pixels": (DEFAULT_MAX_PIXELS, _describe(
        "Frames with more pixels (width x height) are rejected.", integers=(1, 2**31 - 1))),
    "no_frames_timeout": (5.0, _describe(
        "Seconds without a frame while the image topic has publishers before warning once "
        "(0 disables).", floats=(0.0, 3600.0))),
}
CHOICES = {
    "device": None,  # checked by segmenter.resolve_device (cuda:N has no fixed list)
    "precision": PRECISIONS,
    "engine": ENGINES,
    "output_resolution": OUTPUT_RESOLUTIONS,
    "qos_reliability": tuple(QOS_RELIABILITIES),
}


@dataclass(frozen=True)
class FrameSettings:
    """The runtime parameters one frame is processed with."""

    input_size: tuple[int, int]
    output_resolution: str
    overlay_alpha: float
    grid: tuple[int, int]
    max_image_pixels: int


class NewestMessage:
    """A one-message mailbox: put replaces what is there, take waits for a message."""

    def __init__(self):
        self._message = None
        self._closed = False
        self._ready = threading.Condition()

    def put(self, message) -> bool:
        """Store ``message``; True when it replaced one that was never taken."""
        with self._ready:
            replaced = self._message is not None
            self._message = message
            self._ready.notify()
        return replaced

    def take(self):
        """The newest message, waiting for one; None once closed."""
        with self._ready:
            while self._message is None and not self._closed:
                self._ready.wait()
            message, self._message = self._message, None
            return None if self._closed else message

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()


class SegmentationNode(Node):
    """Segments camera images with LEDNet and publishes labels, masks, occupancy, diagnostics."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.stats = PipelineStats()
        self._inbox = NewestMessage()
        self._worker = None
        try:
            for name, (default, descriptor) in PARAMETERS.items():
                self.declare_parameter(name, default, descriptor)
            self.segmenter, self.weights_path = self._load_segmenter()
            settings = self._frame_settings()
            self._check_frame_settings(settings)
            self.segmenter.input_size = settings.input_size
        except (ParameterException, CheckpointError, ValueError) as exc:
            self.get_logger().fatal(f"cannot start: {exc}")
            self.destroy_node()
            raise ConfigurationError(str(exc)) from None
        self.add_on_set_parameters_callback(self._validate_parameter_change)
        self.get_logger().info(
            f"{self.segmenter.describe()}; weights {self.weights_path} "
            f"({metrics_summary(self.segmenter.metadata)})"
        )
        self._create_publishers()
        self._create_subscriptions()
        self._publish_class_info()
        self._last_frame_time = time.monotonic()
        self._publishers_seen_since = None
        self._transport_problem = ""
        self._rejected_reported = 0
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # runs under use_sim_time without /clock
        self._diagnostics_timer = self.create_timer(1.0, self._on_diagnostics_timer, clock=steady)
        self._worker = threading.Thread(target=self._work, name="lednet_worker", daemon=True)
        self._worker.start()

    # ---- start-up and parameters -------------------------------------------------------------

    def _create_publishers(self) -> None:
        self._labels_pub = self.create_publisher(Image, "~/labels", 10)
        self._color_mask_pub = self.create_publisher(Image, "~/color_mask", 10)
        self._overlay_pub = self.create_publisher(Image, "~/overlay", 10)
        self._occupancy_pub = self.create_publisher(ClassOccupancy, "~/occupancy", 10)
        self._class_pubs = []
        if self.get_parameter("publish_class_topics").value:
            self._class_pubs = [
                self.create_publisher(Float32, f"~/occupancy/{token}", 10)
                for token in class_topic_names(self.segmenter.class_names)
            ]
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._class_info_pub = self.create_publisher(ClassInfo, "~/class_info", latched)
        self._camera_info_pub = self.create_publisher(CameraInfo, "~/camera_info", 10)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _create_subscriptions(self) -> None:
        reliability = self.get_parameter("qos_reliability").value
        self._input_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=self.get_parameter("qos_depth").value,
            reliability=QOS_RELIABILITIES[reliability], durability=DurabilityPolicy.VOLATILE,
        )
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        compressed = self.get_parameter("input_compressed").value
        self._read_frame = rgb_from_compressed if compressed else rgb_from_image
        self._image_sub = self.create_subscription(
            CompressedImage if compressed else Image,
            "image/compressed" if compressed else "image",
            self._on_image, self._input_qos, event_callbacks=events,
        )
        self._camera_info = None
        self._camera_info_sub = self.create_subscription(
            CameraInfo, "camera_info", self._on_camera_info, self._input_qos)

    def _load_segmenter(self) -> tuple[Segmenter, str]:
        for name, choices in CHOICES.items():
            value = self.get_parameter(name).value
            if choices is not None and value not in choices:
                raise ConfigurationError(
                    f"parameter {name} is {value!r}; expected one of {', '.join(choices)}")
        weights = self.get_parameter("weights").value or str(default_weights_path())
        segmenter = Segmenter.from_weights(
            weights,
            device=self.get_parameter("device").value,
            precision=self.get_parameter("precision").value,
            engine=self.get_parameter("engine").value,
        )
        return segmenter, weights

    def _frame_settings(self) -> FrameSettings:
        value = lambda name: self.get_parameter(name).value  # noqa: E731
        default_width, default_height = self.segmenter.metadata.input_size
        return FrameSettings(
            input_size=(value("input_width") or default_width,
                        value("input_height") or default_height),
            output_resolution=value("output_resolution"),
            overlay_alpha=value("overlay_alpha"),
            grid=(value("grid_rows"), value("grid_cols")),
            max_image_pixels=value("max_image_pixels"),
        )

    @staticmethod
    def _check_frame_settings(settings: FrameSettings) -> None:
        check_input_size(settings.input_size)
        if settings.output_resolution not in OUTPUT_RESOLUTIONS:
            raise ValueError(
                f"parameter output_resolution is {settings.output_resolution!r}; expected one of "
                f"{', '.join(OUTPUT_RESOLUTIONS)}")

    def _validate_parameter_change(self, parameters) -> SetParametersResult:
        """Refuse runtime values the node cannot use; ranges are already checked by rclpy."""
        for parameter in parameters:
            choices = CHOICES.get(parameter.name)
            if choices is not None and parameter.value not in choices:
                return SetParametersResult(
                    successful=False,
                    reason=f"{parameter.name} {parameter.value!r} is not one of "
                           f"{', '.join(choices)}")
        return SetParametersResult(successful=True)

    # ---- callbacks ----------------------------------------------------------------------------

    def _on_image(self, msg) -> None:
        self._last_frame_time = time.monotonic()
        if self._transport_problem:
            self.get_logger().info(f"frames arrive on {self._image_sub.topic_name} now")
            self._transport_problem = ""
        self.stats.count_received(replaced_unprocessed=self._inbox.put(msg))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_incompatible_qos(self, event) -> None:
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        self._report_transport_problem(
            f"incompatible QoS on {self._image_sub.topic_name}: a publisher offers a {policy} "
            f"policy this subscription cannot match ({event.total_count} incompatible so far)")

    def _on_diagnostics_timer(self) -> None:
        self._check_frames_arrive()
        self._diagnostics_pub.publish(self._diagnostics())

    def _check_frames_arrive(self) -> None:
        """Warn once when the image topic has publishers but no frame came for the timeout."""
        timeout = self.get_parameter("no_frames_timeout").value
        publishers = self.count_publishers(self._image_sub.topic_name)
        now = time.monotonic()
        if publishers == 0 or timeout <= 0:
            self._publishers_seen_since = None
            return
        if self._publishers_seen_since is None:
            self._publishers_seen_since = now
        silent_for = now - max(self._publishers_seen_since, self._last_frame_time)
        if silent_for >= timeout:
            self._report_transport_problem(
                f"{publishers} publisher(s) on {self._image_sub.topic_name} but no frame for "
                f"{silent_for:.1f} s")

    def _report_transport_problem(self, problem: str) -> None:
        if self._transport_problem:
            return
        reliability = self.get_parameter("qos_reliability").value
        self._transport_problem = problem
        self.stats.note_error(problem)
        self.get_logger().warning(
            f"{problem}; {TRANSPORT_ADVICE.format(reliability=reliability)}")

    # ---- the worker ---------------------------------------------------------------------------

    def _work(self) -> None:
        while (msg := self._inbox.take()) is not None:
            try:
                self._process(msg)
            except Exception as exc:  # keep the node alive; the frame is counted and logged
                self._reject(msg.header, f"processing failed: {type(exc).__name__}: {exc}")

    def _process(self, msg) -> None:
        settings = self._frame_settings()
        try:
            rgb = self._read_frame(msg, settings.max_image_pixels)
        except ImageFormatError as exc:
            self._reject(msg.header, str(exc))
            return
        image_size = (rgb.shape[1], rgb.shape[0])
        self._apply_input_size(settings.input_size)
        started = time.perf_counter()
        labels = self.segmenter.segment(rgb, settings.output_resolution)
        inference = time.perf_counter() - started
        label_size = (labels.shape[1], labels.shape[0])
        try:
            occupancy = class_occupancy(labels, self.segmenter.num_classes, settings.grid)
        except ValueError as exc:
            self._reject(msg.header, str(exc))
            return

        header = msg.header
        self._labels_pub.publish(image_message(labels, "mono8", header))
        self._publish_masks(header, rgb, labels, settings.overlay_alpha)
        self._occupancy_pub.publish(
            occupancy_message(occupancy, self.segmenter.class_names, label_size, header))
        for publisher, fraction in zip(self._class_pubs, occupancy.fractions):
            publisher.publish(Float32(data=float(fraction)))
        info = self._camera_info
        if info is not None:
            source = (info.width, info.height) if info.width and info.height else image_size
            self._camera_info_pub.publish(scaled_camera_info(info, source, label_size, header))
        self.stats.count_processed(self._latency(header), inference)

    def _publish_masks(self, header: Header, rgb, labels, alpha: float) -> None:
        """Colour mask and overlay at the labels' size, each only when someone subscribes."""
        want_mask = self._color_mask_pub.get_subscription_count() > 0
        want_overlay = self._overlay_pub.get_subscription_count() > 0
        if not (want_mask or want_overlay):
            return
        color_mask = colorize(labels, self.segmenter.palette)
        if want_mask:
            self._color_mask_pub.publish(image_message(color_mask, "rgb8", header))
        if want_overlay:
            if rgb.shape[:2] != labels.shape:
                rgb = cv2.resize(rgb, labels.shape[::-1], interpolation=cv2.INTER_AREA)
            blend = overlay(rgb, color_mask, alpha)
            self._overlay_pub.publish(image_message(blend, "rgb8", header))

    def _apply_input_size(self, input_size: tuple[int, int]) -> None:
        if tuple(input_size) == tuple(self.segmenter.input_size):
            return
        self.segmenter.input_size = check_input_size(input_size)
        self.get_logger().info(f"network input size now {input_size[0]}x{input_size[1]}")
        self._publish_class_info()

    def _publish_class_info(self) -> None:
        header = Header(stamp=self.get_clock().now().to_msg())
        self._class_info_pub.publish(class_info_message(
            self.segmenter.metadata, self.weights_path, self.segmenter.input_size, header))

    def _latency(self, header: Header) -> float | None:
        """Seconds from the image stamp to now on the node's clock; None when unstamped."""
        if header.stamp.sec == 0 and header.stamp.nanosec == 0:
            return None
        now = self.get_clock().now()
        stamp = Time.from_msg(header.stamp, clock_type=now.clock_type)
        return (now - stamp).nanoseconds / 1e9

    def _reject(self, header: Header, problem: str) -> None:
        stamp = f"{header.stamp.sec}.{header.stamp.nanosec:09d}"
        error = f"frame {stamp} ({header.frame_id or 'no frame_id'}) dropped: {problem}"
        self.stats.count_rejected(error)
        self.get_logger().warning(error, throttle_duration_sec=WARNING_PERIOD_S)

    # ---- diagnostics --------------------------------------------------------------------------

    def _diagnostics(self) -> DiagnosticArray:
        snap = self.stats.snapshot()
        width, height = self.segmenter.input_size
        level, message = DiagnosticStatus.OK, "segmenting"
        if snap.received == 0:
            message = f"waiting for images on {self._image_sub.topic_name}"
        if snap.rejected > self._rejected_reported:
            level, message = DiagnosticStatus.WARN, f"rejecting frames: {snap.last_error}"
        if self._transport_problem:
            level, message = DiagnosticStatus.WARN, self._transport_problem
        self._rejected_reported = snap.rejected
        values = {
            "device": str(self.segmenter.device),
            "precision": self.segmenter.precision,
            "engine": self.segmenter.engine.name,
            "weights": self.weights_path,
            "input size": f"{width}x{height}",
            "image topic": self._image_sub.topic_name,
            "processed rate (Hz)": f"{snap.processed_rate:.2f}",
            "latency p50 (ms)": format_ms(snap.latency_p50),
            "latency p95 (ms)": format_ms(snap.latency_p95),
            "inference p50 (ms)": format_ms(snap.inference_p50),
            "inference p95 (ms)": format_ms(snap.inference_p95),
            "frames received": str(snap.received),
            "frames processed": str(snap.processed),
            "frames dropped": str(snap.dropped),
            "frames rejected": str(snap.rejected),
            "last error": snap.last_error,
        }
        status = DiagnosticStatus(
            level=level, name=f"{self.get_fully_qualified_name()}: segmentation", message=message,
            hardware_id=str(self.segmenter.device),
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )
        return DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                               status=[status])

    def destroy_node(self):
        """Stop the worker, then destroy the node."""
        self._inbox.close()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=10.0)
        return super().destroy_node()


def main(args=None):
    try:
        with rclpy.init(args=args):
            try:
                node = SegmentationNode()
            except ConfigurationError:
                raise SystemExit(1) from None  # the reason is already logged (fatal)
            try:
                rclpy.spin(node)
            finally:
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


if __name__ == "__main__":
    sys.exit(main())
