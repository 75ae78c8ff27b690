"""Camera frames degraded in known ways: what a robot's camera meets when it cannot see.

Each takes an H x W x 3 uint8 RGB frame and returns a new one; ``seed`` makes the random ones
repeatable. Used to test and measure the perception health (core.runtime.health) and the
fail-safe ground outputs; ``frozen`` is a stream-level degradation (the same frame again), so it
is not here: feed one frame repeatedly.

    degrade(rgb, "fog")          # by name, DEGRADATIONS lists them
"""

from __future__ import annotations

import cv2
import numpy as np


def darkened(rgb: np.ndarray, seed: int = 0, factor: float = 0.06) -> np.ndarray:
    """Darken like a tunnel or the night: scaled by ``factor``, with a little sensor noise."""
    noise = np.random.default_rng(seed).normal(0.0, 2.0, rgb.shape)
    return np.clip(rgb * factor + noise, 0, 255).astype(np.uint8)


def blurred(rgb: np.ndarray, seed: int = 0, sigma: float = 0.02) -> np.ndarray:
    """Blur like a lens out of focus or smeared: Gaussian blur of ``sigma`` x the frame's width."""
    return cv2.GaussianBlur(rgb, (0, 0), sigma * rgb.shape[1])


def covered(rgb: np.ndarray, seed: int = 0, share: float = 0.85) -> np.ndarray:
    """Cover the lens with a hand: a dark, blurred skin-coloured blob over ``share`` of it."""
    height, width = rgb.shape[:2]
    rng = np.random.default_rng(seed)
    centre = (width * rng.uniform(0.4, 0.6), height * rng.uniform(0.4, 0.6))
    yy, xx = np.mgrid[0:height, 0:width]
    distance = np.hypot((xx - centre[0]) / width, (yy - centre[1]) / height)
    radius = np.quantile(distance, share)
    mask = cv2.GaussianBlur((distance <= radius).astype(np.float32), (0, 0), 0.03 * width)
    skin = np.array([70, 45, 35], dtype=np.float32) * (0.7 + 0.3 * (1 - distance / radius))[
        ..., None].clip(0.5, 1.0)
    out = rgb * (1 - mask[..., None]) + skin * mask[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def noisy(rgb: np.ndarray, seed: int = 0, sigma: float = 60.0) -> np.ndarray:
    """Add the noise of a failing sensor or high gain: Gaussian, ``sigma`` intensity levels."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


def fogged(rgb: np.ndarray, seed: int = 0, density: float = 0.8) -> np.ndarray:
    """Fog the frame like dense fog or a misted lens: blended to bright grey by ``density``."""
    return np.clip(rgb * (1 - density) + 210.0 * density, 0, 255).astype(np.uint8)


def glared(rgb: np.ndarray, seed: int = 0) -> np.ndarray:
    """Put the sun in the lens: most of the frame washed out to white, a bloom around it."""
    height, width = rgb.shape[:2]
    rng = np.random.default_rng(seed)
    centre = (width * rng.uniform(0.3, 0.7), height * rng.uniform(0.2, 0.5))
    yy, xx = np.mgrid[0:height, 0:width]
    bloom = np.exp(-np.hypot(xx - centre[0], yy - centre[1]) / (0.45 * width))[..., None]
    return np.clip(rgb * 1.6 + 400.0 * bloom, 0, 255).astype(np.uint8)


DEGRADATIONS = {"dark": darkened, "blur": blurred, "covered": covered, "noise": noisy,
                "fog": fogged, "glare": glared}


def degrade(rgb: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """Return ``rgb`` degraded by the degradation ``name`` (a key of DEGRADATIONS)."""
    if name not in DEGRADATIONS:
        raise ValueError(f"degradation {name!r}; expected one of {sorted(DEGRADATIONS)}")
    return DEGRADATIONS[name](rgb, seed=seed)
