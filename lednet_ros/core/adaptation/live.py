"""Adaptation to a live camera stream: gather the next N frames, adapt in the background, swap.

No ROS import: the node's ``~/adapt`` service calls :meth:`LiveAdaptation.start`, its worker
thread offers every frame it processes, and ``adapt(frames)`` (given by the node: recompute the
BatchNorm statistics, build a Segmenter, write the weights where asked) runs in a thread of its
own, so the stream is never stopped. It returns the result and a note on it; a result of None (a
check, e.g. core.adaptation.check, found it no better) or a failure leaves the stream on the
weights it had, and the status says which and why.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

IDLE, GATHERING, ADAPTING = "idle", "gathering", "adapting"


class AdaptationRefused(RuntimeError):
    """A start that cannot be taken now; the message says why."""


class LiveAdaptation:
    """Gathers frames for one adaptation at a time and runs it beside the stream.

    Args:
        adapt: frames (H x W x 3 uint8 RGB) -> (the adapted result, e.g. a Segmenter, or None
            when it is not to be used; a note saying why); may raise.
        on_ready: called with a result that is not None, from the adaptation thread.
        clock: seconds, monotonic (for the gathering deadline; replaceable in tests).
    """

    def __init__(self, adapt: Callable[[list[np.ndarray]], object],
                 on_ready: Callable[[object], None], clock: Callable[[], float] = time.monotonic):
        self._adapt, self._on_ready, self._clock = adapt, on_ready, clock
        self._lock = threading.Lock()
        self._state = IDLE
        self._frames: list[np.ndarray] = []
        self._wanted = 0
        self._deadline = 0.0
        self._thread: threading.Thread | None = None
        self.status = "not adapted"  # the last outcome, for logs and diagnostics
        self.adaptations = 0  # adaptations that succeeded

    @property
    def state(self) -> str:
        return self._state

    def start(self, frames: int, timeout_s: float) -> str:
        """Start gathering the next ``frames`` frames; return what will happen.

        Raises:
            AdaptationRefused: an adaptation is already gathering or running, or ``frames`` < 1.
        """
        if frames < 1:
            raise AdaptationRefused(f"frames to gather is {frames}; it must be at least 1")
        with self._lock:
            if self._state == GATHERING:
                raise AdaptationRefused(f"already adapting: gathering frames "
                                        f"({len(self._frames)}/{self._wanted})")
            if self._state == ADAPTING:
                raise AdaptationRefused("already adapting: recomputing from "
                                        f"{len(self._frames)} frames")
            self._state, self._frames, self._wanted = GATHERING, [], frames
            self._deadline = self._clock() + timeout_s
            self.status = f"gathering 0/{frames} frames"
        return f"gathering the next {frames} frames, then adapting in the background"

    def offer(self, rgb: np.ndarray) -> None:
        """Take a copy of a processed frame while gathering; start adapting at the N-th."""
        with self._lock:
            if self._state != GATHERING:
                return
            self._frames.append(np.array(rgb, copy=True))
            self.status = f"gathering {len(self._frames)}/{self._wanted} frames"
            if len(self._frames) < self._wanted:
                return
            self._state = ADAPTING
            self.status = f"adapting from {len(self._frames)} frames"
            frames = self._frames
        self._thread = threading.Thread(target=self._run, args=(frames,),
                                        name="lednet_adaptation", daemon=True)
        self._thread.start()

    def check_deadline(self) -> str:
        """Give up gathering once its deadline passed; return why ('' while nothing failed)."""
        with self._lock:
            if self._state != GATHERING or self._clock() < self._deadline:
                return ""
            gathered = len(self._frames)
            self._state, self._frames = IDLE, []
            self.status = (f"adaptation abandoned: {gathered}/{self._wanted} frames arrived "
                           "before the deadline")
            return self.status

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a running adaptation thread (tests, shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, frames: list[np.ndarray]) -> None:
        started = self._clock()
        result = None
        try:
            result, note = self._adapt(frames)
        except Exception as exc:  # the stream goes on with the weights it had
            outcome = f"adaptation failed: {type(exc).__name__}: {exc}"
        else:
            self.adaptations += 1
            outcome = (f"adapted from {len(frames)} frames in {self._clock() - started:.1f} s, "
                       f"{'kept' if result is not None else 'not kept, the weights it had stay'}"
                       f": {note}")
        with self._lock:
            self._state, self._frames = IDLE, []
            self.status = outcome
        if result is not None:
            self._on_ready(result)
