"""Paired (image, label) transforms: images bilinear, labels nearest, label padding 255 (ignore).

Every transform takes ``(image, label, rng)`` with a numpy Generator, so augmentation is
reproducible from a seed (and a resumed run sees the same augmentations as an uninterrupted one).
training/presets.py assembles them into the training and evaluation pipelines.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from lednet_ros.core.classes import IGNORE_INDEX


class Compose:
    """Apply ``transforms`` in order to the (image, label) pair."""

    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, image, label, rng):
        for t in self.transforms:
            image, label = t(image, label, rng)
        return image, label


class Resize:
    """Resize to a fixed (width, height)."""

    def __init__(self, size: tuple[int, int]):
        self.size = tuple(size)

    def __call__(self, image, label, rng):
        if image.shape[1::-1] == self.size:
            return image, label
        return (cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR),
                cv2.resize(label, self.size, interpolation=cv2.INTER_NEAREST))


class RandomScale:
    """Scale by a factor drawn uniformly from [low, high]."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def __call__(self, image, label, rng):
        s = rng.uniform(self.low, self.high)
        h, w = label.shape
        size = (max(1, round(w * s)), max(1, round(h * s)))
        return Resize(size)(image, label, rng)


class RandomCrop:
    """Crop (width, height), padding with 0 (image) and 255 (label) where the input is smaller."""

    def __init__(self, size: tuple[int, int]):
        self.width, self.height = size

    def __call__(self, image, label, rng):
        h, w = label.shape
        pad_h, pad_w = max(0, self.height - h), max(0, self.width - w)
        if pad_h or pad_w:
            image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
            label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT,
                                       value=IGNORE_INDEX)
            h, w = label.shape
        y = int(rng.integers(0, h - self.height + 1))
        x = int(rng.integers(0, w - self.width + 1))
        return (image[y:y + self.height, x:x + self.width],
                label[y:y + self.height, x:x + self.width])


class RandomHorizontalFlip:
    """Mirror image and label left to right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image, label, rng):
        if rng.random() < self.p:
            return image[:, ::-1], label[:, ::-1]
        return image, label


class RandomTranslate:
    """Shift by up to ``pixels`` in x and y (the paper's small translation), filling 0 / 255."""

    def __init__(self, pixels: int = 2):
        self.pixels = pixels

    def __call__(self, image, label, rng):
        dx, dy = (int(v) for v in rng.integers(-self.pixels, self.pixels + 1, size=2))
        if dx == 0 and dy == 0:
            return image, label
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        size = label.shape[::-1]
        return (cv2.warpAffine(image, m, size, flags=cv2.INTER_NEAREST, borderValue=0),
                cv2.warpAffine(label, m, size, flags=cv2.INTER_NEAREST, borderValue=IGNORE_INDEX))


class ColorJitter:
    """Scale brightness, contrast and saturation by factors drawn from [1 - s, 1 + s]."""

    def __init__(self, strength: float):
        self.strength = strength

    def __call__(self, image, label, rng):
        low, high = 1 - self.strength, 1 + self.strength
        brightness, contrast, saturation = rng.uniform(low, high, size=3)
        x = image.astype(np.float32) * brightness
        x = (x - x.mean()) * contrast + x.mean()
        grey = x @ np.float32([0.299, 0.587, 0.114])
        x = (x - grey[..., None]) * saturation + grey[..., None]
        return np.clip(x, 0, 255).astype(np.uint8), label


class ToTensor:
    """uint8 HxWx3 RGB -> float 3xHxW in [0, 1], normalised by mean/std; label -> int64 HxW.

    ``void_id`` (a dataset's own ignore value, 11 for CamVid) is mapped to 255.
    """

    def __init__(self, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), void_id: int = IGNORE_INDEX):
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.void_id = void_id

    def __call__(self, image, label, rng):
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
        y = torch.from_numpy(np.ascontiguousarray(label)).long()
        if self.void_id != IGNORE_INDEX:
            y[y == self.void_id] = IGNORE_INDEX
        return (x - self.mean) / self.std, y

