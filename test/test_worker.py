"""lednet_ros/core/runtime/worker.py: the newest-frame-wins worker, without ROS."""

from __future__ import annotations

import threading
import time

from lednet_ros.core.runtime.worker import HandoffWorker, NewestItemWorker


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def busy_worker():
    """Return a worker whose first item waits for the event returned, and what it saw."""
    release, seen = threading.Event(), []

    def handle(items):
        seen.append(items)
        if len(seen) == 1:
            release.wait(10)

    return NewestItemWorker(handle), release, seen


def test_newest_item_wins_while_the_worker_is_busy():
    worker, release, seen = busy_worker()
    worker.put(0)
    wait_for(lambda: seen == [{"": 0}])
    assert worker.put(1) is False and worker.put(2) is True  # 1 never taken: replaced
    release.set()
    wait_for(lambda: seen == [{"": 0}, {"": 2}])
    worker.stop()


def test_the_newest_of_each_camera_is_taken_together():
    worker, release, seen = busy_worker()
    worker.put("f0", "front")
    wait_for(lambda: len(seen) == 1)
    assert worker.put("f1", "front") is False
    assert worker.put("l1", "left") is False  # another camera's frame replaces nothing
    assert worker.put("f2", "front") is True
    release.set()
    wait_for(lambda: len(seen) == 2)
    assert seen[1] == {"front": "f2", "left": "l1"}  # one batch, the newest of each
    worker.stop()


def test_the_handoff_keeps_every_item_in_order_and_one_waiting_at_most():
    release, seen = threading.Event(), []

    def handle(item):
        if not seen:
            release.wait(10)
        seen.append(item)

    handoff = HandoffWorker(handle)
    handoff.put(0)  # taken at once, then held
    handoff.put(1)  # waits in the slot
    third = threading.Thread(target=handoff.put, args=(2,))
    third.start()
    time.sleep(0.2)
    assert third.is_alive()  # the slot is full: put waits, nothing queues or drops
    release.set()
    third.join(10)
    handoff.stop()
    assert seen == [0, 1, 2]
