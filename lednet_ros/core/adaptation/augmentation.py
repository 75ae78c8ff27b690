"""Training batches of self-training: frames as unit floats, randomly rescaled, flipped, jittered.

No ROS import.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from lednet_ros.core.data.classes import IGNORE_INDEX


def augment(images: torch.Tensor, labels: torch.Tensor, scale: tuple[float, float],
            color_jitter: float, generator: np.random.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly rescale, crop (or pad) back to the size, flip and colour-jitter a batch.

    ``images``: N x 3 x h x w float in [0, 1]; ``labels``: N x h x w int64 (255 ignored, and
    the padding). The rescale factor is drawn from ``scale``; brightness, contrast and
    saturation factors from [1 - ``color_jitter``, 1 + ``color_jitter``].
    """
    height, width = images.shape[-2:]
    out_images, out_labels = torch.zeros_like(images), torch.full_like(labels, IGNORE_INDEX)
    for i in range(images.shape[0]):
        s = generator.uniform(*scale)
        size = (max(1, round(height * s)), max(1, round(width * s)))
        image = F.interpolate(images[i:i + 1], size=size, mode="bilinear", align_corners=False)
        label = F.interpolate(labels[i:i + 1, None].float(), size=size, mode="nearest")[:, 0]
        top = int(generator.integers(0, max(0, size[0] - height) + 1))
        left = int(generator.integers(0, max(0, size[1] - width) + 1))
        image = image[..., top:top + height, left:left + width]
        label = label[..., top:top + height, left:left + width].long()
        if generator.random() < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        h, w = image.shape[-2:]
        out_images[i, :, :h, :w], out_labels[i, :h, :w] = image[0], label[0]
    if color_jitter:
        low, high = 1.0 - color_jitter, 1.0 + color_jitter
        factors = torch.from_numpy(generator.uniform(low, high, (images.shape[0], 3, 1, 1, 1)))
        brightness, contrast, saturation = factors.float().unbind(1)
        x = out_images * brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast + mean
        grey = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        out_images = ((x - grey) * saturation + grey).clamp(0.0, 1.0)
    return out_images, out_labels


def unit_batch(frames, indices, input_size) -> torch.Tensor:
    """Return the frames at ``indices`` as N x 3 x h x w floats in [0, 1] at ``input_size``.

    Made per batch from the frames as they are held (no second copy of them all).
    """
    width, height = input_size
    resized = [frames[i] if frames[i].shape[1::-1] == (width, height)
               else cv2.resize(frames[i], (width, height), interpolation=cv2.INTER_LINEAR)
               for i in indices]
    return torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float() / 255.0
