"""/diagnostics status of a segmentation pipeline, built from the core's statistics."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

from lednet_ros.core.stats import StatsSnapshot, format_ms


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


def diagnostic_array(stamp, *statuses: DiagnosticStatus) -> DiagnosticArray:
    return DiagnosticArray(header=Header(stamp=stamp), status=list(statuses))
