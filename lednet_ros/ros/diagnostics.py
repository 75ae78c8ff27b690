"""/diagnostics status of a segmentation pipeline, built from the core's statistics."""

from __future__ import annotations


from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import qos_policy_name_from_kind
from std_msgs.msg import Header

from lednet_ros.core.runtime.stats import PipelineStats, SilenceWatch, StatsSnapshot, format_ms

WARNING_PERIOD_S = 5.0  # a warning that repeats is logged at most once per this many seconds

TRANSPORT_ADVICE = (
    "check (1) QoS: the publisher's reliability must suit this subscription's qos_reliability "
    "'{reliability}' (a best_effort publisher cannot serve a reliable subscription); "
    "(2) large frames: the publishing process (the camera driver) must load the Fast DDS profile "
    "config/fastdds_shm.xml too (FASTDDS_DEFAULT_PROFILES_FILE for Fast DDS 3.x, "
    "FASTRTPS_DEFAULT_PROFILES_FILE for 2.x: set both); (3) or use a compressed image "
    "topic with input_compressed:=true"
)


class InputWatch:
    """Warns once, with advice, when frames do not arrive; notes when they arrive again.

    Frames do not arrive with incompatible QoS, or with publishers on the image topic but no
    frame for ``timeout`` seconds.
    """

    def __init__(self, node: Node, stats: PipelineStats, reliability: str):
        self.node, self.stats, self.reliability = node, stats, reliability
        self.topic = ""  # the subscription's resolved name, once it exists (watch)
        self.problem = ""
        self._silence = SilenceWatch()

    def watch(self, topic: str) -> None:
        """Name the image topic watched (known once the subscription exists)."""
        self.topic = topic

    @property
    def last_arrival(self) -> float | None:
        """time.monotonic() of the last frame; None before the first."""
        return self._silence.last_frame

    def frame_arrived(self) -> None:
        self._silence.frame_arrived()
        if self.problem:
            self.node.get_logger().info(f"frames arrive on {self.topic} now")
            self.problem = ""

    def on_incompatible_qos(self, event) -> None:
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        self._report(f"incompatible QoS on {self.topic}: a publisher offers a {policy} policy "
                     f"this subscription cannot match ({event.total_count} incompatible so far)")

    def check(self, timeout: float) -> None:
        """Warn when publishers sent no frame for ``timeout`` seconds; called once a second."""
        publishers = self.node.count_publishers(self.topic)
        silent = self._silence.silent_for(publishers, timeout)
        if silent:
            self._report(f"{publishers} publisher(s) on {self.topic} but no frame for "
                         f"{silent:.1f} s")

    def _report(self, problem: str) -> None:
        if self.problem:
            return
        self.problem = problem
        self.stats.note_error(problem)
        advice = TRANSPORT_ADVICE.format(reliability=self.reliability)
        self.node.get_logger().warning(f"{problem}; {advice}")


def pipeline_status(name: str, hardware_id: str, snap: StatsSnapshot, settings: dict,
                    *, waiting_for: str, new_rejections: bool, problem: str) -> DiagnosticStatus:
    """OK while segmenting; WARN with the reason on new rejected frames or a transport problem.

    ``settings`` (device, engine, ...) come first among the key-values, then rates, latencies
    and frame counters.
    """
    level, message = DiagnosticStatus.OK, "segmenting"
    if snap.received == 0:
        message = f"waiting for images on {waiting_for}"
    if new_rejections:
        level, message = DiagnosticStatus.WARN, f"rejecting frames: {snap.last_error}"
    if problem:
        level, message = DiagnosticStatus.WARN, problem
    values = {
        **settings,
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
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


def segmentation_status(name: str, segmenter, input_size, weights: str, watch: InputWatch,
                        snap: StatsSnapshot, new_rejections: bool, **more: str
                        ) -> DiagnosticStatus:
    """Build the segmentation node's pipeline_status: its Segmenter, input, ``more`` settings.

    ``more``: e.g. adaptation and ground_source, shown with spaces for underscores.
    """
    settings = {"device": segmenter.device, "precision": segmenter.precision,
                "engine": segmenter.engine.name, "why": segmenter.choice_reason,
                "weights": weights, "image topic": watch.topic,
                "input size": f"{input_size[0]}x{input_size[1]}",
                **{key.replace("_", " "): value for key, value in more.items()}}
    return pipeline_status(name, str(segmenter.device), snap, settings, waiting_for=watch.topic,
                           new_rejections=new_rejections, problem=watch.problem)


def health_status(name: str, hardware_id: str, report, counts: dict[str, int],
                  withheld: bool) -> DiagnosticStatus:
    """Give the perception health of the last frame (a HealthReport), or that none came yet.

    Level and message are the report's; key-values its figures, whether the ground outputs
    withheld free space, and how many frames were OK / WARN / ERROR so far.
    """
    if report is None:
        return DiagnosticStatus(level=DiagnosticStatus.OK, name=name, hardware_id=hardware_id,
                                message="no frame checked yet")
    values = {**{k: f"{v:.4g}" for k, v in report.figures.items()},
              "free space withheld": str(withheld).lower(),
              **{f"frames {level}": str(n) for level, n in counts.items()}}
    level = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR)[report.level]
    return DiagnosticStatus(level=level, name=name, hardware_id=hardware_id,
                            message=report.summary() if report.reasons else "camera sees, "
                            "network sure",
                            values=[KeyValue(key=k, value=v) for k, v in values.items()])


def diagnostic_array(stamp, *statuses: DiagnosticStatus) -> DiagnosticArray:
    return DiagnosticArray(header=Header(stamp=stamp), status=list(statuses))
