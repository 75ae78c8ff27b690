"""lednet_ros/core/runtime/worker.py: the newest-frame-wins worker, without ROS."""

from __future__ import annotations

import threading
import time

from lednet_ros.core.runtime.worker import NewestItemWorker


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_newest_item_wins_while_the_worker_is_busy():
    release, seen = threading.Event(), []

    def handle(item):
        seen.append(item)
        if item == 0:
            release.wait(10)

    worker = NewestItemWorker(handle)
    worker.put(0)
    wait_for(lambda: seen == [0])
    assert worker.put(1) is False and worker.put(2) is True  # 1 never taken: replaced
    release.set()
    wait_for(lambda: seen == [0, 2])
    worker.stop()
