"""A label-free check of adapted weights on frames held back from adapting. No ROS import.

Three figures per model on the held-back frames, none needing a label: the mean confidence (the
softmax maximum, averaged over pixels), the agreement between a frame's labels and its mirror
image's (mirrored back), and the spread of the labels over the classes (the entropy of their
shares, over its maximum): weights that fit the camera better are surer and more consistent,
and weights that collapsed onto a few classes (surer and consistent too: statistics of dark
frames do that) spread less. The adapted weights are kept only when they are surer, no less
consistent and spread nearly as widely as the weights they would replace (judge); the reason
quotes the figures of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from lednet_ros.core.adaptation.batchnorm import model_device
from lednet_ros.core.inference.model import LEDNet
from lednet_ros.core.inference.network_io import preprocess

# Agreement may fall this much (a share of pixels) and still count as no less consistent.
AGREEMENT_TOLERANCE = 0.002
# The labels' spread over the classes may fall to this share of the weights' own, no lower
# (measured, docs/weights.md: adaptations that kept 95% or more of it never lowered the labelled
# frame's mIoU; one at 90.5% lost 1.7 points).
SPREAD_KEPT = 0.95


@dataclass(frozen=True)
class CheckScore:
    """Label-free figures of one model on the held-back frames (shares in [0, 1])."""

    confidence: float
    agreement: float
    spread: float

    def __str__(self) -> str:
        return (f"confidence {100 * self.confidence:.1f}%, "
                f"mirror agreement {100 * self.agreement:.1f}%, "
                f"class spread {100 * self.spread:.1f}%")


@torch.no_grad()
def check_score(model: LEDNet, frames: Sequence[np.ndarray], input_size, mean, std) -> CheckScore:
    """Return the model's confidence, mirror agreement and class spread over ``frames``.

    The model runs in inference mode and is left in the mode it was given in.
    """
    was_training = model.training
    model.eval()
    device = model_device(model)
    confidence = agreement = 0.0
    counts = torch.zeros(model.num_classes, dtype=torch.float64)
    for rgb in frames:
        x = preprocess(rgb, input_size, mean, std, device)
        probabilities = model(x).softmax(1)
        mirrored = model(x.flip(-1)).softmax(1).flip(-1)
        top, labels = probabilities.max(1)
        confidence += float(top.mean())
        agreement += float((labels == mirrored.argmax(1)).float().mean())
        counts += torch.bincount(labels.flatten(), minlength=model.num_classes).double()
    model.train(was_training)
    shares = counts[counts > 0] / counts.sum()
    spread = float(-(shares * shares.log()).sum() / np.log(model.num_classes))
    return CheckScore(confidence / len(frames), agreement / len(frames), spread)


def judge(before: CheckScore, after: CheckScore) -> tuple[bool, str]:
    """Return (keep the adapted weights?, why), quoting both scores."""
    surer = after.confidence > before.confidence
    consistent = after.agreement >= before.agreement - AGREEMENT_TOLERANCE
    spread = after.spread >= SPREAD_KEPT * before.spread
    keep = surer and consistent and spread
    why = ("surer, as consistent, as spread" if keep else "not surer" if not surer
           else "less consistent" if not consistent else "collapsed onto fewer classes")
    return keep, f"{why} on held-back frames: adapted {after}; before {before}"
