"""Frame counters, latency percentiles and rates of a running pipeline; no ROS import.

The segmentation node updates a :class:`PipelineStats` from its subscription callback and its
worker thread, and turns :meth:`PipelineStats.snapshot` into a diagnostic_msgs status each second.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass


class LatencyWindow:
    """The last ``size`` latencies in seconds, with percentiles over them."""

    def __init__(self, size: int = 200):
        self._values: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._values.append(seconds)

    def __len__(self) -> int:
        return len(self._values)

    def percentile(self, p: float) -> float:
        """Return the p-th percentile (0..100, nearest rank) of the window; NaN when empty."""
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {p}")
        if not self._values:
            return math.nan
        ordered = sorted(self._values)
        rank = max(1, math.ceil(p / 100.0 * len(ordered)))
        return ordered[rank - 1]


class RateMeter:
    """Events per second over the events of the last ``window`` seconds (monotonic clock)."""

    def __init__(self, window: float = 5.0, clock=time.monotonic):
        self.window = window
        self._clock = clock
        self._times: deque[float] = deque()

    def tick(self) -> None:
        self._times.append(self._clock())
        self._trim()

    def rate(self) -> float:
        """Events per second; 0.0 with fewer than two events in the window."""
        self._trim()
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def _trim(self) -> None:
        horizon = self._clock() - self.window
        while self._times and self._times[0] < horizon:
            self._times.popleft()


@dataclass(frozen=True)
class StatsSnapshot:
    """A consistent copy of the counters and latency figures (seconds)."""

    received: int
    processed: int
    dropped: int
    rejected: int
    last_error: str
    processed_rate: float
    latency_p50: float
    latency_p95: float
    inference_p50: float
    inference_p95: float


class PipelineStats:
    """Thread-safe counters of a newest-frame-wins pipeline.

    received: frames that arrived; dropped: frames replaced by a newer one before being processed;
    rejected: frames that could not be read (bad input); processed: frames whose outputs were sent.
    """

    def __init__(self, window: int = 200, clock=time.monotonic):
        self._lock = threading.Lock()
        self.received = self.processed = self.dropped = self.rejected = 0
        self.last_error = ""
        self._latency = LatencyWindow(window)
        self._inference = LatencyWindow(window)
        self._rate = RateMeter(clock=clock)

    def count_received(self, replaced_unprocessed: bool) -> None:
        with self._lock:
            self.received += 1
            self.dropped += int(replaced_unprocessed)

    def count_rejected(self, error: str) -> None:
        with self._lock:
            self.rejected += 1
            self.last_error = error

    def count_processed(self, latency: float | None, inference: float) -> None:
        """One frame done; ``latency`` (stamp to publish) is None where the stamp is unset."""
        with self._lock:
            self.processed += 1
            if latency is not None:
                self._latency.add(latency)
            self._inference.add(inference)
            self._rate.tick()

    def note_error(self, error: str) -> None:
        """Record a problem that is not a rejected frame (e.g. a transport warning)."""
        with self._lock:
            self.last_error = error

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(
                received=self.received,
                processed=self.processed,
                dropped=self.dropped,
                rejected=self.rejected,
                last_error=self.last_error,
                processed_rate=self._rate.rate(),
                latency_p50=self._latency.percentile(50),
                latency_p95=self._latency.percentile(95),
                inference_p50=self._inference.percentile(50),
                inference_p95=self._inference.percentile(95),
            )


def format_ms(seconds: float) -> str:
    """Seconds as milliseconds with one decimal, or 'n/a' for NaN."""
    return "n/a" if math.isnan(seconds) else f"{1000.0 * seconds:.1f}"


class SilenceWatch:
    """Tells when an input topic has publishers but no frame came for ``timeout`` seconds.

    The node calls :meth:`frame_arrived` for each frame and :meth:`silent_for` once a second
    with the topic's publisher count; a timeout of 0 disables the check.
    """

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self.last_frame = None  # clock() of the last frame, None before the first
        self._publishers_since = None

    def frame_arrived(self) -> None:
        self.last_frame = self._clock()

    def silent_for(self, publishers: int, timeout: float) -> float:
        """Seconds without a frame while publishers existed, when at least ``timeout``; else 0."""
        now = self._clock()
        if publishers == 0 or timeout <= 0:
            self._publishers_since = None
            return 0.0
        if self._publishers_since is None:
            self._publishers_since = now
        silent = now - max(self._publishers_since, self.last_frame or self._publishers_since)
        return silent if silent >= timeout else 0.0
