"""Newest-frame-wins processing in a background thread; no ROS import.

Camera callbacks put each frame under their camera's key; the worker takes, in one go, the newest
frame of every camera that has one waiting (a batch for the network). A frame replaced before the
worker took it is dropped (never queued), so latency stays one frame deep however slow the
processing is, and the threads that put (a ROS executor) never wait for the network.

A HandoffWorker takes what the first stage made (a batch's labels) to a second thread (publish),
so that the network runs on the next frames while the last ones are published.
"""

from __future__ import annotations

import queue
import threading


class NewestPerKey:
    """A mailbox of one item per key: put replaces that key's item, take waits for any."""

    def __init__(self):
        self._items = {}
        self._closed = False
        self._ready = threading.Condition()

    def put(self, item, key="") -> bool:
        """Store ``item`` under ``key``; True when it replaced one that was never taken."""
        with self._ready:
            replaced = key in self._items
            self._items[key] = item
            self._ready.notify()
        return replaced

    def take(self) -> dict | None:
        """Return {key: newest item} of every key waiting, waiting for one; None once closed."""
        with self._ready:
            while not self._items and not self._closed:
                self._ready.wait()
            items, self._items = self._items, {}
            return None if self._closed else items

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()


class NewestItemWorker:
    """Calls ``handle({key: item})`` in a thread with the newest item of each key put.

    ``handle`` must not raise.
    """

    def __init__(self, handle, name: str = "worker"):
        self._inbox = NewestPerKey()
        self._handle = handle
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item, key="") -> bool:
        """Hand over ``item``; True when it replaced an unprocessed one of ``key`` (dropped)."""
        return self._inbox.put(item, key)

    def is_alive(self) -> bool:
        """Tell whether the worker thread still runs (an exception in ``handle`` ends it)."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking items and wait for the one in progress (not from the worker itself)."""
        self._inbox.close()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while (items := self._inbox.take()) is not None:
            self._handle(items)


class HandoffWorker:
    """Calls ``handle(item)`` in a thread for every item put, in order; never drops one.

    ``put`` waits while an item is already waiting, so at most one waits and one is handled:
    the stage before it slows down rather than queueing. ``handle`` must not raise.
    """

    _STOP = object()

    def __init__(self, handle, name: str = "handoff"):
        self._queue = queue.Queue(maxsize=1)
        self._handle = handle
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item) -> None:
        """Hand over ``item``; waits while the one before it has not been taken."""
        self._queue.put(item)

    def is_alive(self) -> bool:
        """Tell whether the thread still runs (an exception in ``handle`` ends it)."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Handle what was put, then end the thread (not from the thread itself)."""
        self._queue.put(self._STOP)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not self._STOP:
            self._handle(item)
