"""lednet_ros/core/adaptation/live.py: gather N frames, adapt beside the stream, refuse clearly."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from lednet_ros.core.adaptation.live import (
    ADAPTING, GATHERING, IDLE, AdaptationRefused, LiveAdaptation,
)


def frame(value: int) -> np.ndarray:
    return np.full((4, 6, 3), value, np.uint8)


class Recorder:
    """An adapt function that records its frames and waits until released."""

    def __init__(self, fail: str = ""):
        self.frames, self.results, self.fail = None, [], fail
        self.release = threading.Event()

    def adapt(self, frames, held):
        self.frames, self.held = frames, held
        self.release.wait(10)
        if self.fail:
            raise RuntimeError(self.fail)
        return f"adapted on {len(frames)}", "checked"


def test_gathers_the_next_frames_adapts_in_the_background_and_hands_over():
    recorder = Recorder()
    live = LiveAdaptation(recorder.adapt, recorder.results.append)
    live.offer(frame(1))  # before start: not gathered
    assert "3 frames" in live.start(3, timeout_s=60)
    source = frame(2)
    live.offer(source)
    source[:] = 99  # the caller reuses its buffer: the gathered frame is a copy
    live.offer(frame(3))
    assert live.state == GATHERING and live.status == "gathering 2/3 frames"
    live.offer(frame(4))
    assert live.state == ADAPTING  # the offering thread is not held up by the adaptation
    with pytest.raises(AdaptationRefused, match="already adapting: recomputing from 3 frames"):
        live.start(3, timeout_s=60)
    live.offer(frame(5))  # while adapting: ignored
    recorder.release.set()
    live.wait(10)
    assert [int(f[0, 0, 0]) for f in recorder.frames] == [2, 3, 4]
    assert recorder.results == ["adapted on 3"]
    assert live.state == IDLE and live.adaptations == 1
    assert live.status.startswith("adapted from 3 frames in ") and live.status.endswith(
        " s, kept: checked")


def test_a_result_the_check_rejects_is_not_handed_over_and_says_why():
    handed = []
    live = LiveAdaptation(lambda frames, held: (None, "not surer on held-back frames"),
                          handed.append)
    live.start(2, timeout_s=60)
    live.offer(frame(1))
    live.offer(frame(2))
    live.wait(10)
    assert handed == [] and live.adaptations == 1 and live.state == IDLE
    assert live.status.endswith(" s, not kept, the weights it had stay: not surer on held-back "
                                "frames")


def test_a_second_start_while_gathering_is_refused_with_the_count():
    live = LiveAdaptation(Recorder().adapt, print)
    live.start(5, timeout_s=60)
    live.offer(frame(1))
    with pytest.raises(AdaptationRefused, match=r"already adapting: gathering frames \(1/5\)"):
        live.start(5, timeout_s=60)
    with pytest.raises(AdaptationRefused,
                       match="frames to gather is 1; adapting needs at least 2"):
        LiveAdaptation(print, print).start(1, timeout_s=60)


def test_gathering_gives_up_at_its_deadline_and_can_start_again():
    now = [100.0]
    live = LiveAdaptation(Recorder().adapt, print, clock=lambda: now[0])
    live.start(4, timeout_s=30)
    live.offer(frame(1))
    now[0] = 129.0
    assert live.check_deadline() == "" and live.state == GATHERING
    now[0] = 130.5
    assert live.check_deadline() == ("adaptation abandoned: 1/4 frames arrived before the "
                                     "deadline")
    assert live.state == IDLE and live.adaptations == 0
    live.start(2, timeout_s=30)  # a new start is taken
    assert live.state == GATHERING


def test_a_failed_adaptation_is_reported_and_nothing_is_handed_over():
    recorder = Recorder(fail="weights file vanished")
    recorder.release.set()
    live = LiveAdaptation(recorder.adapt, recorder.results.append)
    live.start(2, timeout_s=60)
    live.offer(frame(1))
    live.offer(frame(2))
    live.wait(10)
    assert recorder.results == [] and live.adaptations == 0 and live.state == IDLE
    assert live.status == "adaptation failed: RuntimeError: weights file vanished"


def test_every_nth_frame_is_held_back_for_the_check_and_bad_counts_are_refused():
    recorder = Recorder()
    recorder.release.set()
    live = LiveAdaptation(recorder.adapt, recorder.results.append)
    live.start(7, timeout_s=60, check_every=3)
    for value in range(7):
        live.offer(frame(value))
    live.wait(10)
    assert [int(f[0, 0, 0]) for f in recorder.frames] == [0, 1, 3, 4, 6]
    assert [int(f[0, 0, 0]) for f in recorder.held] == [2, 5]
    assert live.status.startswith("adapted from 5 frames (2 held back) in ")
    with pytest.raises(AdaptationRefused, match="check_every is 1: every frame"):
        live.start(7, timeout_s=60, check_every=1)
    with pytest.raises(AdaptationRefused, match="4 frames hold none back for the check "
                                                r"\(every 5-th\); gather at least 5"):
        live.start(4, timeout_s=60, check_every=5)
    with pytest.raises(AdaptationRefused, match="frames to gather is 2; adapting needs at least "
                                                "2 besides those held back"):
        live.start(2, timeout_s=60, check_every=2)


def test_frames_are_held_at_the_size_asked():
    recorder = Recorder()
    recorder.release.set()
    live = LiveAdaptation(recorder.adapt, recorder.results.append)
    live.start(2, timeout_s=60, size=(3, 2))
    live.offer(np.full((40, 60, 3), 7, np.uint8))
    live.offer(np.full((40, 60, 3), 9, np.uint8))
    live.wait(10)
    assert [f.shape for f in recorder.frames] == [(2, 3, 3)] * 2
    assert [int(f[1, 2, 0]) for f in recorder.frames] == [7, 9]
