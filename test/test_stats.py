"""Pipeline counters, latency percentiles and rates (core.runtime.stats); no ROS needed."""

from __future__ import annotations

import math
import threading

import pytest

from lednet_ros.core.runtime.stats import LatencyWindow, PipelineStats, RateMeter, format_ms


class FakeClock:
    """A settable monotonic clock for rate measurements."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_latency_percentiles_use_nearest_rank_over_the_window():
    window = LatencyWindow(size=10)
    assert math.isnan(window.percentile(50))
    for value in [5, 1, 4, 2, 3, 9, 8, 6, 7, 10]:
        window.add(float(value))
    assert window.percentile(50) == 5.0
    assert window.percentile(95) == 10.0
    assert window.percentile(0) == 1.0
    window.add(0.5)  # pushes out the oldest value, 5
    assert len(window) == 10 and window.percentile(50) == 4.0
    with pytest.raises(ValueError, match="percentile must be in \\[0, 100\\], got 101"):
        window.percentile(101)


def test_rate_counts_events_within_the_window():
    clock = FakeClock()
    meter = RateMeter(window=5.0, clock=clock)
    assert meter.rate() == 0.0
    for _ in range(11):
        meter.tick()
        clock.now += 0.25
    assert meter.rate() == pytest.approx(10 / 2.5)
    clock.now += 10.0  # everything is older than the window
    assert meter.rate() == 0.0


def test_pipeline_stats_count_and_snapshot():
    stats = PipelineStats(clock=FakeClock())
    stats.count_received(replaced_unprocessed=False)
    stats.count_received(replaced_unprocessed=True)
    stats.count_received(replaced_unprocessed=False)
    stats.count_rejected("unsupported encoding '32FC1'")
    stats.count_processed(latency=0.040, inference=0.010)
    stats.count_processed(latency=None, inference=0.030)  # unstamped: no latency sample
    snap = stats.snapshot()
    assert (snap.received, snap.dropped, snap.rejected, snap.processed) == (3, 1, 1, 2)
    assert snap.last_error == "unsupported encoding '32FC1'"
    assert snap.latency_p50 == snap.latency_p95 == 0.040
    assert (snap.inference_p50, snap.inference_p95) == (0.010, 0.030)
    stats.note_error("no frames")
    assert stats.snapshot().last_error == "no frames"


def test_pipeline_stats_are_thread_safe():
    stats = PipelineStats()

    def receive():
        for _ in range(5000):
            stats.count_received(replaced_unprocessed=True)

    threads = [threading.Thread(target=receive) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.snapshot().received == stats.snapshot().dropped == 20000


def test_format_ms():
    assert format_ms(0.0123) == "12.3"
    assert format_ms(math.nan) == "n/a"
