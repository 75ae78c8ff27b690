"""Newest-frame-wins processing in a background thread; no ROS import.

A camera callback puts each frame; the worker processes the newest one. A frame replaced before
the worker took it is dropped (never queued), so latency stays one frame deep however slow the
processing is, and the thread that puts (a ROS executor) never waits for the network.
"""

from __future__ import annotations

import threading


class NewestItem:
    """A one-item mailbox: put replaces what is there, take waits for an item."""

    def __init__(self):
        self._item = None
        self._closed = False
        self._ready = threading.Condition()

    def put(self, item) -> bool:
        """Store ``item``; True when it replaced one that was never taken."""
        with self._ready:
            replaced = self._item is not None
            self._item = item
            self._ready.notify()
        return replaced

    def take(self):
        """Return the newest item, waiting for one; None once closed."""
        with self._ready:
            while self._item is None and not self._closed:
                self._ready.wait()
            item, self._item = self._item, None
            return None if self._closed else item

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()


class NewestItemWorker:
    """Calls ``handle(item)`` in a thread for the newest item put; ``handle`` must not raise."""

    def __init__(self, handle, name: str = "worker"):
        self._inbox = NewestItem()
        self._handle = handle
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item) -> bool:
        """Hand over ``item``; True when it replaced an unprocessed one (that one is dropped)."""
        return self._inbox.put(item)

    def is_alive(self) -> bool:
        """Tell whether the worker thread still runs (an exception in ``handle`` ends it)."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking items and wait for the one in progress (not from the worker itself)."""
        self._inbox.close()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._inbox.take()) is not None:
            self._handle(item)
