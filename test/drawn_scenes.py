"""Drawn camera frames and bags of them for tests: made here, so they may be committed.

The tests' made street frames are all drawn by ``street``; the presets after it are the looks
tests ask for by name. Their pixels are the ones the tests' numbers were measured on (the shipped
weights see sky on top of road_scene, for one): change a preset and rerun its users.
``made_frames`` are random rectangles, not streets: distinct frames for scoring bags.
"""

from __future__ import annotations

import cv2
import numpy as np

MADE_SIZE = (256, 128)  # width, height of made frames and of the network input used on them

# Looks. Bands: (bottom as a fraction of the height, RGB colour) from the top down. Blocks and
# the car: (top, bottom, left, right as fractions of the height and the width, RGB colour).
CLEAR_DAY = ((0.5, (90, 140, 200)), (1.0, (110, 110, 110)))  # blue sky, grey road
RED_CAR = (1 / 3, 2 / 3, 1 / 4, 1 / 2, (200, 30, 30))
OVERCAST = ((0.3, (235, 238, 242)), (0.55, (120, 100, 90)), (1.0, (85, 83, 90)))  # facades ahead
TOWERS = ((0.1, 0.55, 0.0, 0.2, (120, 100, 90)), (0.15, 0.55, 0.8, 1.0, (110, 95, 85)))
LANE_WHITE = (230, 230, 230)
LIGHT_TOP = ((1 / 3, (150, 150, 150)), (1.0, (0, 0, 0)))  # dark below: an unusual camera


def street(height: int = MADE_SIZE[1], width: int = MADE_SIZE[0], seed=0, noise=0.0,
           shift: int = 0, *, bands=CLEAR_DAY, blocks=(), car=RED_CAR, lane=None,
           exposure: float = 1.0) -> np.ndarray:
    """Draw a street as a camera sees it: an RGB uint8 frame of ``height`` x ``width``.

    seed: an int, or a numpy Generator to draw several frames from one stream.
    noise: sensor noise, the standard deviation of Gaussian noise or an inclusive (low, high)
        range of uniform integer noise; 0: none.
    shift: pixels the car moves to the right, wrapping round within the frame.
    bands, blocks, car (None: none): see the looks above; blocks are drawn over the bands.
    lane: the colour of a lane line up the middle of the road, drawn over the noise.
    exposure: a gain on the whole frame (a camera of its own).
    """
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float64)
    top = 0
    for bottom, colour in bands:
        image[top:int(bottom * height)] = colour
        top = int(bottom * height)
    for top, bottom, left, right, colour in blocks:
        rows = slice(int(top * height), int(bottom * height))
        image[rows, int(left * width):int(right * width)] = colour
    if car is not None:
        top, bottom, left, right, colour = car
        x, car_width = int(left * width), int(right * width) - int(left * width)
        if shift:
            x = (x + shift) % (width - car_width)
        image[int(top * height):int(bottom * height), x:x + car_width] = colour
    if isinstance(noise, tuple):
        image = image + rng.integers(noise[0], noise[1] + 1, image.shape)
    elif noise:
        image = image + rng.normal(0, noise, image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if lane is not None:
        cv2.line(image, (width // 2, height - 1), (width // 2, int(0.58 * height)), lane, 4)
    if exposure != 1.0:
        image = np.clip(image.astype(np.float32) * exposure, 0, 255).astype(np.uint8)
    return image


def sky_road_card(height=96, width=160, seed=0, exposure=1.0) -> np.ndarray:
    """Make the clear-day street: sky-blue top, grey road bottom, a red box, noise of +-20."""
    return street(height, width, seed, noise=(-20, 20), exposure=exposure)


def exposed_card(seed: int) -> np.ndarray:
    """Make the sky_road_card of ``seed``, darker or lighter by seed (a camera of its own)."""
    return sky_road_card(seed=seed, exposure=0.55 + 0.1 * (seed % 4))


def road_scene(height: int = 360, width: int = 480, seed: int = 0) -> np.ndarray:
    """Draw a street as a car sees it.

    Bright overcast sky, buildings on both sides rising into it and a band of facades ahead, an
    asphalt road with a lane line; a little sensor noise.
    """
    return street(height, width, seed, noise=4.0, bands=OVERCAST, blocks=TOWERS, car=None,
                  lane=LANE_WHITE)


def grainy_road_scene(height: int = 360, width: int = 480, seed: int = 0) -> np.ndarray:
    """Draw road_scene's street with a real camera's grain (noise of 12 levels).

    Smooth drawn surfaces look like a covered lens to the perception health (featureless);
    with this grain they pass its checks.
    """
    return street(height, width, seed, noise=12.0, bands=OVERCAST, blocks=TOWERS, car=None,
                  lane=LANE_WHITE)


def dark_streets(count: int, size=MADE_SIZE, seed: int = 0) -> list[np.ndarray]:
    """Make dark frames with a light top: a camera unlike any the random model saw."""
    rng = np.random.default_rng(seed)
    width, height = size
    return [street(height, width, rng, noise=(0, 59), bands=LIGHT_TOP, car=None)
            for _ in range(count)]


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
