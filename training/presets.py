"""The training and evaluation pipelines, built from explicit settings (no argparse namespace).

Sizes are (width, height). Labels are resized with nearest, padded with 255 (ignored), and a
dataset's own void id is mapped to 255.
"""

from __future__ import annotations

from collections.abc import Sequence

from lednet_ros.core.classes import IGNORE_INDEX
from training.transforms import (
    ColorJitter, Compose, RandomCrop, RandomHorizontalFlip, RandomScale, RandomTranslate, Resize,
    ToTensor)


def train_preset(*, resize: tuple[int, int] | None = None,
                 scale_jitter: tuple[float, float] | None = None,
                 crop: tuple[int, int] | None = None, translate: int = 2,
                 color_jitter: float = 0.0, mean: Sequence[float] = (0.0, 0.0, 0.0),
                 std: Sequence[float] = (1.0, 1.0, 1.0),
                 void_id: int = IGNORE_INDEX) -> Compose:
    """Build the training pipeline: the paper's resize, flip and translation, plus options.

    Args:
        resize: resize every image first (the paper: 1024x512); None keeps the dataset's size.
        scale_jitter: (low, high) range of a random scale factor; None for no scaling.
        crop: random crop of this size (padded where the image is smaller); None for no crop.
        translate: largest random shift in pixels, in x and y.
        color_jitter: brightness, contrast and saturation factors drawn from [1-s, 1+s]; 0: none.
        mean: per-channel mean of the normalisation (RGB, in [0, 1]).
        std: per-channel standard deviation of the normalisation.
        void_id: the dataset's own ignore value, mapped to 255.
    """
    steps = []
    if resize:
        steps.append(Resize(resize))
    if scale_jitter:
        steps.append(RandomScale(*scale_jitter))
    if crop:
        steps.append(RandomCrop(crop))
    steps += [RandomHorizontalFlip(0.5), RandomTranslate(translate)]
    if color_jitter:
        steps.append(ColorJitter(color_jitter))
    steps.append(ToTensor(mean, std, void_id))
    return Compose(steps)


def eval_preset(*, size: tuple[int, int] | None = None, mean: Sequence[float] = (0.0, 0.0, 0.0),
                std: Sequence[float] = (1.0, 1.0, 1.0), void_id: int = IGNORE_INDEX) -> Compose:
    """Build the evaluation pipeline: images (bilinear) and labels (nearest) at ``size``.

    Args:
        size: evaluation size; None keeps the dataset's size.
        mean: per-channel mean of the normalisation (RGB, in [0, 1]).
        std: per-channel standard deviation of the normalisation.
        void_id: the dataset's own ignore value, mapped to 255.
    """
    steps = [Resize(size)] if size else []
    return Compose(steps + [ToTensor(mean, std, void_id)])
