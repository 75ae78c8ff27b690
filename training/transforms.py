"""Paired (image, label) transforms: images bilinear, labels nearest, label padding 255 (ignore).

Every transform takes ``(image, label, rng)`` with a numpy Generator, so augmentation is
reproducible from a seed (and a resumed run sees the same augmentations as an uninterrupted one).
training/presets.py assembles them into the training and evaluation pipelines.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from lednet_ros.core.data.classes import IGNORE_INDEX


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


class RandomApply:
    """Apply ``transform`` with probability ``p`` (the draw is made whatever ``p`` is)."""

    def __init__(self, transform, p: float):
        self.transform, self.p = transform, p

    def __call__(self, image, label, rng):
        if rng.random() < self.p:
            return self.transform(image, label, rng)
        return image, label


class RandomAspect:
    """Stretch x against y: width/height ratio times r, log r uniform in +-log(1 + strength).

    The area is kept (x scaled by sqrt(r), y by 1/sqrt(r)); 1.0 reaches 2:1 and 1:2.
    """

    def __init__(self, strength: float):
        self.strength = strength

    def __call__(self, image, label, rng):
        ratio = np.exp(rng.uniform(-1, 1) * np.log1p(self.strength))
        h, w = label.shape
        size = (max(1, round(w * ratio ** 0.5)), max(1, round(h / ratio ** 0.5)))
        return Resize(size)(image, label, rng)


class RandomPitch:
    """Tilt the camera up or down: the horizon moves by up to ``fraction`` of the image height.

    The homography of a rotation about the camera's x axis, K R K^-1, with the focal length
    taken as the image width (a 53-degree horizontal field of view) and the principal point at
    the centre. Borders are filled with 0 (image) and 255 (label).
    """

    def __init__(self, fraction: float):
        self.fraction = fraction

    def __call__(self, image, label, rng):
        h, w = label.shape
        angle = np.arctan(rng.uniform(-1, 1) * self.fraction * h / w)
        camera = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]])
        c, s = np.cos(angle), np.sin(angle)
        rotation = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
        homography = camera @ rotation @ np.linalg.inv(camera)
        return (cv2.warpPerspective(image, homography, (w, h), flags=cv2.INTER_LINEAR,
                                    borderValue=0),
                cv2.warpPerspective(label, homography, (w, h), flags=cv2.INTER_NEAREST,
                                    borderValue=IGNORE_INDEX))


class RandomHue:
    """Rotate hues by an angle drawn from [-degrees, degrees] (about the grey axis, in YIQ)."""

    RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                           [0.211, -0.523, 0.312]])

    def __init__(self, degrees: float):
        self.degrees = degrees

    def __call__(self, image, label, rng):
        angle = np.radians(rng.uniform(-self.degrees, self.degrees))
        c, s = np.cos(angle), np.sin(angle)
        rotation = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
        matrix = np.linalg.inv(self.RGB_TO_YIQ) @ rotation @ self.RGB_TO_YIQ
        x = image.astype(np.float32) @ matrix.T.astype(np.float32)
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), label


class RandomGamma:
    """Apply a gamma curve, 255 * (x / 255) ** g, g drawn from [1 - s, 1 + s]."""

    def __init__(self, strength: float):
        self.strength = strength

    def __call__(self, image, label, rng):
        gamma = rng.uniform(1 - self.strength, 1 + self.strength)
        table = np.rint(255 * (np.arange(256) / 255) ** gamma).astype(np.uint8)
        return table[image], label


class RandomWhiteBalance:
    """Multiply each colour channel by its own gain drawn from [1 - s, 1 + s]."""

    def __init__(self, strength: float):
        self.strength = strength

    def __call__(self, image, label, rng):
        gains = rng.uniform(1 - self.strength, 1 + self.strength, size=3).astype(np.float32)
        return np.clip(np.rint(image * gains), 0, 255).astype(np.uint8), label


class RandomBlur:
    """Gaussian blur with sigma drawn from [0, max_sigma] pixels (kernel of +-3 sigma)."""

    def __init__(self, max_sigma: float):
        self.max_sigma = max_sigma

    def __call__(self, image, label, rng):
        sigma = rng.uniform(0, self.max_sigma)
        kernel = 2 * int(np.ceil(3 * sigma)) + 1
        if kernel == 1:
            return image, label
        return cv2.GaussianBlur(np.ascontiguousarray(image), (kernel, kernel), sigma), label


class RandomNoise:
    """Add Gaussian sensor noise, its standard deviation drawn from [0, max_std] grey levels."""

    def __init__(self, max_std: float):
        self.max_std = max_std

    def __call__(self, image, label, rng):
        std = rng.uniform(0, self.max_std)
        noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(std)
        return np.clip(np.rint(image + noise), 0, 255).astype(np.uint8), label


class RandomJpeg:
    """Re-encode as JPEG (OpenCV, 4:2:0) at a quality drawn from [min_quality, 95]."""

    def __init__(self, min_quality: int):
        self.min_quality = min_quality

    def __call__(self, image, label, rng):
        quality = int(rng.integers(self.min_quality, 96))
        bgr = np.ascontiguousarray(image[..., ::-1])
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError(f"JPEG encoding of a {image.shape} {image.dtype} image failed")
        return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1], label


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

