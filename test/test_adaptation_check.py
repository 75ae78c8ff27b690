"""lednet_ros/core/adaptation/check.py: the label-free check that keeps or refuses adapted weights.

On the packaged weights and real frames (CamVid test, or drawn road scenes without ../shared):
statistics taken from dark frames collapse the model's labels on normal ones onto fewer classes,
and the check says so.
"""

from __future__ import annotations

import numpy as np

from lednet_ros.core.adaptation.check import CheckScore, check_score, judge
from lednet_ros.core.adaptation.live import held_back
from lednet_ros.core.adaptation.methods import recompute_bn_statistics
from lednet_ros.core.inference.checkpoint import load_weights
from lednet_ros.core.inference.segmenter import default_weights_path

INPUT = (240, 180)


def test_every_nth_frame_is_held_back():
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(10)]
    kept, held = held_back(frames, 5)
    assert [int(f[0, 0, 0]) for f in held] == [4, 9]
    assert [int(f[0, 0, 0]) for f in kept] == [0, 1, 2, 3, 5, 6, 7, 8]
    assert held_back(frames, 0) == (frames, [])


def test_statistics_of_dark_frames_are_refused_on_normal_ones(frames):
    model, metadata = load_weights(default_weights_path())
    dark = [(f // 6).astype(np.uint8) for f in frames for _ in range(2)]
    darkened = recompute_bn_statistics(model, dark, INPUT, metadata.mean, metadata.std,
                                       batch_size=2)
    mode = model.training
    before = check_score(model, frames, INPUT, metadata.mean, metadata.std)
    after = check_score(darkened, frames, INPUT, metadata.mean, metadata.std)
    assert after.spread < 0.9 * before.spread  # surer, but of fewer classes
    keep, why = judge(before, after)
    assert not keep and why.startswith("collapsed onto fewer classes on held-back frames: "
                                       "adapted confidence ")
    assert f"before {before}" in why
    assert model.training == mode  # the check leaves the models as it found them


def test_judge_keeps_only_surer_and_as_consistent_weights():
    base = CheckScore(0.80, 0.90, 0.60)
    assert judge(base, CheckScore(0.82, 0.90, 0.60))[0]
    assert judge(base, CheckScore(0.82, 0.899, 0.58))[0]  # within the tolerances
    # spread under 95% of before: measured, entropy at lr 3e-3 kept only 90.5% of the base's
    # spread and lost 1.7 points on a labelled frame
    assert not judge(base, CheckScore(0.82, 0.90, 0.56))[0]
    keep, why = judge(base, CheckScore(0.85, 0.85, 0.60))
    assert not keep and why.startswith("less consistent")
    assert not judge(base, CheckScore(0.85, 0.90, 0.50))[0]  # collapsing
    keep, why = judge(base, base)
    assert not keep and why.startswith("not surer")  # no better is not kept
