"""The per-frame work, written once: an RGB array in; labels and more out, with timings.

Out come labels, occupancy and, on demand, colour mask, overlay, confidence and the mirrored
frame's confidence in each label (ground.mirror_check). The node, the
benchmark, the offline bag evaluation and the file tool all call :meth:`Pipeline.process`. No ROS
import.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

from lednet_ros.core.inference.segmenter import MAX_INPUT_SIDE, Segmenter, check_output_resolution
from lednet_ros.core.runtime.images import DEFAULT_MAX_PIXELS
from lednet_ros.core.runtime.occupancy import Occupancy, class_occupancy
from lednet_ros.core.runtime.rendering import check_overlay_alpha, colorize, overlay

MAX_GRID = 64


@dataclass(frozen=True)
class FrameSettings:
    """What one frame is processed with (the node's runtime parameters), checked when built.

    Raises:
        ValueError: a value outside its range or choices, named as the node's parameter.
    """

    input_size: tuple[int, int] = (0, 0)  # network input (w, h); 0: the weights' width/height
    output_resolution: str = "original"  # labels at the image's size, or the network's
    overlay_alpha: float = 0.5
    grid: tuple[int, int] = (3, 3)  # occupancy region grid (rows, cols)
    max_image_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self):
        for name, value in zip(("input_width", "input_height"), self.input_size, strict=True):
            if not 0 <= value <= MAX_INPUT_SIDE:
                raise ValueError(f"{name} is {value}; expected 0 (the weights' size) to "
                                 f"{MAX_INPUT_SIDE} pixels")
        check_output_resolution(self.output_resolution)
        check_overlay_alpha(self.overlay_alpha)
        rows, cols = self.grid
        if not (1 <= rows <= MAX_GRID and 1 <= cols <= MAX_GRID):
            raise ValueError(f"region grid {rows}x{cols} (grid_rows x grid_cols) is outside "
                             f"1..{MAX_GRID} per side")
        if self.max_image_pixels < 1:
            raise ValueError(f"max_image_pixels is {self.max_image_pixels}; expected >= 1")


@dataclass(frozen=True)
class Outputs:
    """Which optional outputs to compute (each costs time; the node asks for subscribed ones)."""

    color_mask: bool = False
    overlay: bool = False
    confidence: bool = False
    mirror_confidence: bool = False  # the mirrored frames go through the network too


@dataclass
class FrameResult:
    """One frame's results; optional outputs are None unless asked for."""

    labels: np.ndarray  # h x w uint8 class ids
    occupancy: Occupancy
    image_size: tuple[int, int]  # (w, h) of the input image
    inference_s: float  # preprocess + network + labels
    total_s: float
    color_mask: np.ndarray | None = None
    overlay: np.ndarray | None = None
    confidence: np.ndarray | None = None
    # h x w uint8: the mirrored frame's confidence in each pixel's label (0: labelled otherwise)
    mirror_confidence: np.ndarray | None = None

    @property
    def label_size(self) -> tuple[int, int]:
        return self.labels.shape[1], self.labels.shape[0]


class Pipeline:
    """A Segmenter plus the post-processing of every frame.

    ``computed`` counts the optional outputs made (color_mask, overlay, confidence), so callers
    and tests can see that nothing was computed that nobody asked for; ``batches`` counts the
    forward passes per number of frames in them.
    """

    def __init__(self, segmenter: Segmenter):
        self.segmenter = segmenter
        self.computed: Counter[str] = Counter()
        self.batches: Counter[int] = Counter()

    def input_size(self, settings: FrameSettings) -> tuple[int, int]:
        """Return the network input (w, h) of the settings; 0 takes the weights' width/height."""
        default_width, default_height = self.segmenter.metadata.input_size
        width, height = settings.input_size
        return width or default_width, height or default_height

    def describe(self, settings: FrameSettings) -> str:
        """Describe the Segmenter in one line, at the input size of ``settings``."""
        return self.segmenter.describe(self.input_size(settings))

    def check(self, settings: FrameSettings) -> None:
        """ValueError naming the value when ``settings`` cannot work with these weights.

        (Each value's own range was checked when ``settings`` was built.)
        """
        width, height = self.input_size(settings)
        rows, cols = settings.grid
        if settings.output_resolution == "network" and (rows > height or cols > width):
            raise ValueError(
                f"region grid {rows}x{cols} (rows x cols) does not fit the {width}x{height} "
                "label images of output_resolution 'network'; lower grid_rows/grid_cols or "
                "raise the input size")

    def process(self, rgb: np.ndarray, settings: FrameSettings = FrameSettings(),
                outputs: Outputs = Outputs()) -> FrameResult:
        """Segment an H x W x 3 uint8 RGB array: :meth:`segment_batch`, then :meth:`finish`.

        Raises:
            ValueError: the region grid does not fit the label image (the message says so).
        """
        return self.finish(self.segment_batch([rgb], settings, [outputs])[0], settings, outputs)

    def segment_batch(self, images, settings: FrameSettings, wanted) -> list[tuple]:
        """Run the network once on several frames: (rgb, labels, confidence, mirror, seconds).

        ``wanted``: the Outputs of each image (the confidence and the mirror confidence are
        computed for all when any asks for them: the mirrored frames join the same pass); the
        seconds are the whole pass's (every frame waited for all of it). The node segments the
        next batch while :meth:`finish` runs on this one in another thread.
        """
        started = time.perf_counter()
        mirror = any(o.mirror_confidence for o in wanted)
        batch = [*images, *(np.ascontiguousarray(rgb[:, ::-1]) for rgb in images)] if mirror \
            else images
        predictions = self.segmenter.predict_batch(
            batch, settings.output_resolution,
            confidence=mirror or any(o.confidence for o in wanted),
            input_size=self.input_size(settings))
        mirrors = [np.where(labels == mirrored[:, ::-1], sure[:, ::-1], 0).astype(np.uint8)
                   for (labels, _), (mirrored, sure) in zip(predictions, predictions[len(images):])
                   ] if mirror else [None] * len(images)
        inference = time.perf_counter() - started
        self.batches[len(batch)] += 1
        return [(rgb, labels, confidence, mirrored, inference) for rgb, (labels, confidence),
                mirrored in zip(images, predictions, mirrors)]

    def finish(self, segmented: tuple, settings: FrameSettings, outputs: Outputs) -> FrameResult:
        """One frame's FrameResult from :meth:`segment_batch`'s: occupancy, optional images.

        ``total_s`` is the pass's seconds plus this frame's own post-processing.
        """
        rgb, labels, confidence, mirror_confidence, inference = segmented
        started = time.perf_counter()
        occupancy = class_occupancy(labels, self.segmenter.num_classes, settings.grid)
        result = FrameResult(labels=labels, occupancy=occupancy,
                             image_size=(rgb.shape[1], rgb.shape[0]), inference_s=inference,
                             total_s=0.0, confidence=confidence,
                             mirror_confidence=mirror_confidence)
        if outputs.confidence:
            self.computed["confidence"] += 1
        if outputs.color_mask or outputs.overlay:
            result.color_mask = colorize(labels, self.segmenter.palette)
            self.computed["color_mask"] += 1
        if outputs.overlay:
            if rgb.shape[:2] != labels.shape:
                rgb = cv2.resize(rgb, labels.shape[::-1], interpolation=cv2.INTER_AREA)
            result.overlay = overlay(rgb, result.color_mask, settings.overlay_alpha)
            self.computed["overlay"] += 1
        result.total_s = inference + time.perf_counter() - started
        return result
