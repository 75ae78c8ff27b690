"""Drawn camera frames and bags of them for tests: made here, so they may be committed."""

from __future__ import annotations

import cv2
import numpy as np


def sky_road_card(height=96, width=160, seed=0) -> np.ndarray:
    """Make an RGB frame: sky-blue top, grey road bottom, a red box, noise."""
    rng = np.random.default_rng(seed)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[: height // 2] = (90, 140, 200)
    rgb[height // 2:] = (110, 110, 110)
    rgb[height // 3: 2 * height // 3, width // 4: width // 2] = (200, 30, 30)
    noise = rng.integers(-20, 21, rgb.shape)
    return np.clip(rgb.astype(int) + noise, 0, 255).astype(np.uint8)


def road_scene(height: int = 360, width: int = 480, seed: int = 0) -> np.ndarray:
    """Draw a street as a car sees it.

    Bright overcast sky, buildings on both sides rising into it and a band of facades ahead, an
    asphalt road with a lane line; a little sensor noise.
    """
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float64)
    horizon = int(0.55 * height)
    image[:int(0.3 * height)] = (235, 238, 242)
    image[int(0.3 * height):horizon] = (120, 100, 90)
    image[int(0.10 * height):horizon, :width // 5] = (120, 100, 90)
    image[int(0.15 * height):horizon, 4 * width // 5:] = (110, 95, 85)
    image[horizon:] = (85, 83, 90)
    image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    cv2.line(image, (width // 2, height - 1), (width // 2, int(0.58 * height)), (230, 230, 230), 4)
    return image


MADE_SIZE = (256, 128)  # width, height of made frames and of the network input used on them


def made_frames(count: int, size=MADE_SIZE, seed: int = 0) -> list[np.ndarray]:
    """Make distinct RGB frames: random coloured rectangles on a sky/road split, with noise."""
    rng = np.random.default_rng(seed)
    width, height = size
    frames = []
    for _ in range(count):
        rgb = np.zeros((height, width, 3), np.uint8)
        rgb[: height // 2] = rng.integers(0, 256, 3)
        rgb[height // 2:] = rng.integers(0, 256, 3)
        for _ in range(4):
            x, y = rng.integers(0, width - width // 4), rng.integers(0, height - height // 4)
            rgb[y:y + rng.integers(10, 40), x:x + rng.integers(10, 60)] = rng.integers(0, 256, 3)
        frames.append(np.clip(rgb + rng.integers(-15, 16, rgb.shape), 0, 255).astype(np.uint8))
    return frames


def perfect_bag(path, segmenter, frames, storage="mcap", topics=None) -> list[np.ndarray]:
    """Write a bag whose ground truth is the model's own output: a perfectly scoring model."""
    from lednet_ros.core.data.bags import write_bag

    truth = [segmenter.segment(rgb) for rgb in frames]
    write_bag(path, zip(frames, truth), storage=storage, rate_hz=10, topics=topics)
    return truth
