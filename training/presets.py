"""The training and evaluation pipelines, built from explicit settings (no argparse namespace).

Sizes are (width, height). Labels are resized with nearest, padded with 255 (ignored), and a
dataset's own void id is mapped to 255.
"""

from __future__ import annotations

from collections.abc import Sequence

from lednet_ros.core.data.classes import IGNORE_INDEX
from training.transforms import (
    ColorJitter, Compose, RandomApply, RandomAspect, RandomBlur, RandomCrop, RandomGamma,
    RandomHorizontalFlip, RandomHue, RandomJpeg, RandomNoise, RandomPitch, RandomScale,
    RandomTranslate, RandomWhiteBalance, Resize, ToTensor,
)

# How often the camera augmentations that are not centred on "no change" are applied: half the
# samples keep CamVid's own geometry and image quality.
CAMERA_AUGMENTATION_P = 0.5


def train_preset(*, resize: tuple[int, int] | None = None,
                 scale_jitter: tuple[float, float] | None = None,
                 crop: tuple[int, int] | None = None, translate: int = 2,
                 color_jitter: float = 0.0, hue: float = 0.0, gamma: float = 0.0,
                 white_balance: float = 0.0, blur: float = 0.0, noise: float = 0.0,
                 jpeg_quality: int = 0, aspect_jitter: float = 0.0, pitch_warp: float = 0.0,
                 mean: Sequence[float] = (0.0, 0.0, 0.0), std: Sequence[float] = (1.0, 1.0, 1.0),
                 void_id: int = IGNORE_INDEX) -> Compose:
    """Build the training pipeline: the paper's resize, flip and translation, plus options.

    Every option at 0 (or None) adds no step, so the pipeline and its random draws are those of
    a run that predates the option. The camera augmentations (pitch, aspect, blur, noise, JPEG)
    are applied to a sample with probability CAMERA_AUGMENTATION_P; hue, gamma and white balance
    always, as their ranges are centred on no change.

    Args:
        resize: resize every image first (the paper: 1024x512); None keeps the dataset's size.
        scale_jitter: (low, high) range of a random scale factor; None for no scaling.
        crop: random crop of this size (padded where the image is smaller); None for no crop.
        translate: largest random shift in pixels, in x and y.
        color_jitter: brightness, contrast and saturation factors drawn from [1-s, 1+s]; 0: none.
        hue: largest hue rotation in degrees.
        gamma: gamma drawn from [1-s, 1+s].
        white_balance: per-channel gains drawn from [1-s, 1+s].
        blur: largest Gaussian blur sigma in pixels.
        noise: largest standard deviation of Gaussian noise, in grey levels (of 255).
        jpeg_quality: JPEG re-encoding at a quality drawn from [jpeg_quality, 95]; 0: none.
        aspect_jitter: width/height ratio multiplied by up to 1 + s or divided by up to 1 + s.
        pitch_warp: largest horizon shift of a camera-pitch warp, a fraction of the height.
        mean: per-channel mean of the normalisation (RGB, in [0, 1]).
        std: per-channel standard deviation of the normalisation.
        void_id: the dataset's own ignore value, mapped to 255.
    """
    p = CAMERA_AUGMENTATION_P
    steps = []
    if resize:
        steps.append(Resize(resize))
    if pitch_warp:
        steps.append(RandomApply(RandomPitch(pitch_warp), p))
    if scale_jitter:
        steps.append(RandomScale(*scale_jitter))
    if aspect_jitter:
        steps.append(RandomApply(RandomAspect(aspect_jitter), p))
    if crop:
        steps.append(RandomCrop(crop))
    steps += [RandomHorizontalFlip(0.5), RandomTranslate(translate)]
    # The camera's image chain: optics, sensor, colour processing, compression.
    if blur:
        steps.append(RandomApply(RandomBlur(blur), p))
    if noise:
        steps.append(RandomApply(RandomNoise(noise), p))
    if color_jitter:
        steps.append(ColorJitter(color_jitter))
    if white_balance:
        steps.append(RandomWhiteBalance(white_balance))
    if gamma:
        steps.append(RandomGamma(gamma))
    if hue:
        steps.append(RandomHue(hue))
    if jpeg_quality:
        steps.append(RandomApply(RandomJpeg(jpeg_quality), p))
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
