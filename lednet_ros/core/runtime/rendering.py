"""Colour masks and overlays of label images, for RViz and people."""

from __future__ import annotations

import cv2
import numpy as np


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """H x w class ids -> h x w x 3 uint8 colours from a 256 x 3 palette (labels.palette).

    uint8 labels go through OpenCV's lookup table (9x numpy's fancy indexing here).
    """
    if labels.dtype != np.uint8 or palette.shape != (256, 3):
        return palette[labels]
    return cv2.LUT(cv2.merge([labels, labels, labels]), palette.reshape(256, 1, 3))


def check_overlay_alpha(alpha: float) -> float:
    """``alpha`` when it lies in [0, 1]; else ValueError naming it."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay_alpha is {alpha}; expected 0 (image only) to 1 (mask only)")
    return alpha


def overlay(rgb: np.ndarray, color_mask: np.ndarray, alpha: float) -> np.ndarray:
    """Blend: (1 - alpha) * image + alpha * mask; the mask is resized (nearest) to the image."""
    check_overlay_alpha(alpha)
    if color_mask.shape[:2] != rgb.shape[:2]:
        color_mask = cv2.resize(color_mask, rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    return cv2.addWeighted(rgb, 1.0 - alpha, color_mask, alpha, 0.0)
