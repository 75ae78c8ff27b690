"""Adaptation to a live camera stream: gather the next N frames, adapt in the background, swap.

No ROS import: the node's ``~/adapt`` service calls :meth:`LiveAdaptation.start`, its worker
thread offers every frame it processes, and ``adapt(frames, held_back)`` (given by the node:
adapt on the frames, check the result on the held-back ones, build a Segmenter, write the
weights where asked) runs in a thread of its own, so the stream is never stopped. It returns the
result and a note on it; a result of None (a check, e.g. core.adaptation.check, found it no
better) or a failure leaves the stream on the weights it had, and the status says which and why.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

import cv2
import numpy as np

from lednet_ros.core.adaptation import MIN_FRAMES

IDLE, GATHERING, ADAPTING = "idle", "gathering", "adapting"


def held_back(frames: Sequence[np.ndarray], every: int) -> tuple[list, list]:
    """Split frames into (to adapt on, held back): every ``every``-th frame is held back."""
    if every < 2:
        return list(frames), []
    kept = [f for i, f in enumerate(frames) if i % every != every - 1]
    return kept, [f for i, f in enumerate(frames) if i % every == every - 1]


class AdaptationRefused(RuntimeError):
    """A start that cannot be taken now; the message says why."""


class LiveAdaptation:
    """Gathers frames for one adaptation at a time and runs it beside the stream.

    Args:
        adapt: (frames to adapt on, frames held back for a check; H x W x 3 uint8 RGB) -> (the
            adapted result, e.g. a Segmenter, or None when it is not to be used; a note saying
            why); may raise.
        on_ready: called with a result that is not None, from the adaptation thread.
        clock: seconds, monotonic (for the gathering deadline; replaceable in tests).
    """

    def __init__(self, adapt: Callable[[list[np.ndarray], list[np.ndarray]], tuple],
                 on_ready: Callable[[object], None], clock: Callable[[], float] = time.monotonic):
        self._adapt, self._on_ready, self._clock = adapt, on_ready, clock
        self._lock = threading.Lock()
        self._state = IDLE
        self._frames: list[np.ndarray] = []
        self._wanted = 0
        self._size: tuple[int, int] | None = None
        self._check_every = 0
        self._deadline = 0.0
        self._thread: threading.Thread | None = None
        self.status = "not adapted"  # the last outcome, for logs and diagnostics
        self.adaptations = 0  # adaptations that succeeded

    @property
    def state(self) -> str:
        return self._state

    def start(self, frames: int, timeout_s: float, size: tuple[int, int] | None = None,
              check_every: int = 0) -> str:
        """Start gathering the next ``frames`` frames; return what will happen.

        ``size`` (width, height): each frame is held resized to it (as frame_sampling does), so
        90 frames of a large camera take no more memory than the network's input needs.
        ``check_every``: every N-th frame is held back for the check (held_back; 0: none).

        Raises:
            AdaptationRefused: an adaptation is already gathering or running, or the counts
                leave too few frames to adapt on or none to check on.
        """
        if check_every == 1:
            raise AdaptationRefused("check_every is 1: every frame would be held back; 0 (no "
                                    "check) or at least 2")
        held = len(held_back(range(frames), check_every)[1])
        if check_every and not held:
            raise AdaptationRefused(f"{frames} frames hold none back for the check (every "
                                    f"{check_every}-th); gather at least {check_every}")
        if frames - held < MIN_FRAMES:
            raise AdaptationRefused(f"frames to gather is {frames}; adapting needs at least "
                                    f"{MIN_FRAMES} besides those held back")
        with self._lock:
            if self._state == GATHERING:
                raise AdaptationRefused(f"already adapting: gathering frames "
                                        f"({len(self._frames)}/{self._wanted})")
            if self._state == ADAPTING:
                raise AdaptationRefused("already adapting: recomputing from "
                                        f"{len(self._frames)} frames")
            self._state, self._frames, self._wanted = GATHERING, [], frames
            self._size = None if size is None else (int(size[0]), int(size[1]))
            self._check_every = check_every
            self._deadline = self._clock() + timeout_s
            self.status = f"gathering 0/{frames} frames"
        return f"gathering the next {frames} frames, then adapting in the background"

    def offer(self, rgb: np.ndarray) -> None:
        """Take a copy of a processed frame while gathering; start adapting at the N-th."""
        with self._lock:
            if self._state != GATHERING:
                return
            size = self._size
            self._frames.append(np.array(rgb, copy=True) if size in (None, rgb.shape[1::-1])
                                else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
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
        learn, held = held_back(frames, self._check_every)
        try:
            result, note = self._adapt(learn, held)
        except Exception as exc:  # the stream goes on with the weights it had
            outcome = f"adaptation failed: {type(exc).__name__}: {exc}"
        else:
            self.adaptations += 1
            outcome = (f"adapted from {len(learn)} frames"
                       + (f" ({len(held)} held back)" if held else "")
                       + f" in {self._clock() - started:.1f} s, "
                       f"{'kept' if result is not None else 'not kept, the weights it had stay'}"
                       f": {note}")
        with self._lock:
            self._state, self._frames = IDLE, []
            self.status = outcome
        if result is not None:
            self._on_ready(result)
