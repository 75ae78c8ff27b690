"""Per-frame perception health: whether the camera sees and the network is sure of it.

Cheap checks (well under 1 ms at 480x360) on each frame and its results, no ROS:

- the image, on a small copy (at most CHECK_WIDTH wide): dark (mean luma), glare (share of
  saturated pixels), low contrast (luma standard deviation over mean: fog, glare), featureless
  (share of flat FLAT_BLOCK-pixel blocks: a covered lens, darkness), blur (Laplacian over
  luma standard deviation), grain (the lower quartile of the Laplacian's magnitude: noise);
- the stream: frozen (the same pixels as the last frames: a stuck driver) and stale stamps (a
  stamp not after the last frame's);
- the network: the share of pixels whose confidence (softmax maximum) is below
  ``unsure_confidence``, against the shares the weights showed on clean frames of their own
  test split (the reference their metadata records: unsure_thresholds; else fixed defaults);
- the share of the image each class takes (figures only).

Each failed check gives a reason at WARN or ERROR; the frame's level is the worst. What follows
from a level (the ground outputs mark nothing free) is the caller's policy
(HealthSettings.withhold_free_at). Thresholds and how they were measured: docs/health.md.

    monitor = HealthMonitor(HealthSettings())
    report = monitor.check(rgb, stamp_ns, labels, confidence, num_classes)
    report.level, report.reasons, report.figures
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = ("ok", "warn", "error")
WITHHOLD_CHOICES = ("warn", "error", "never")
CHECK_WIDTH = 160  # the image checks run on a copy this wide (or the frame, when narrower)
RESULT_SAMPLES = 40_000  # the labels and confidence are read at about this many pixels
FLAT_BLOCK = 10  # pixels per side of the blocks of the featureless check (on that copy)
FLAT_STD = 2.0  # a block whose luma standard deviation is below this is flat
HEALTH_REFERENCE = "health_reference"  # the weights' metadata.metrics key of their reference
# From a reference, WARN and ERROR sit this far above the highest unsure share of its clean
# frames (the packaged weights: 0.30 on CamVid test, hence 0.35 and 0.50).
UNSURE_WARN_MARGIN, UNSURE_ERROR_MARGIN = 0.05, 0.20


@dataclass(frozen=True)
class HealthSettings:
    """Thresholds of the checks (the node's ``health.*`` parameters).

    Attributes:
        dark_luma: mean luma (0-255) below which the frame is too dark (ERROR).
        glare_share: share of pixels at luma >= 250 above which the frame is washed out (ERROR).
        min_contrast: luma standard deviation over mean luma below which nothing can be told
            apart (ERROR).
        max_flat_share: share of flat blocks above which the frame is featureless (ERROR).
        min_sharpness: Laplacian standard deviation over luma standard deviation below which
            the frame is blurred (WARN).
        max_grain: lower quartile of |Laplacian| (luma levels) above which the frame is
            noisy (WARN).
        frozen_frames: this many frames in a row with the same pixels: frozen (ERROR); 0: off.
        unsure_confidence: a pixel whose confidence is below this is unsure.
        unsure_warn, unsure_error: shares of unsure pixels above which the network is unsure
            of the frame (WARN, ERROR).
        withhold_free_at: from which level ("warn", "error"; "never": off) the ground outputs
            mark as unknown what they would mark free.

    Raises:
        ValueError: a value outside its range, named as the node's parameter.
    """

    dark_luma: float = 20.0
    glare_share: float = 0.6
    min_contrast: float = 0.3
    max_flat_share: float = 0.55
    min_sharpness: float = 0.2
    max_grain: float = 8.0
    frozen_frames: int = 5
    unsure_confidence: float = 0.7
    unsure_warn: float = 0.35
    unsure_error: float = 0.5
    withhold_free_at: str = "warn"

    def __post_init__(self):
        ranges = {"dark_luma": (0.0, 255.0), "glare_share": (0.0, 1.0),
                  "min_contrast": (0.0, 10.0), "max_flat_share": (0.0, 1.0),
                  "min_sharpness": (0.0, 10.0), "max_grain": (0.0, 255.0),
                  "unsure_confidence": (0.0, 1.0), "unsure_warn": (0.0, 1.0),
                  "unsure_error": (0.0, 1.0)}
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"health.{name} is {value}; expected {low:g} to {high:g}")
        if not 0 <= self.frozen_frames <= 1000:
            raise ValueError(f"health.frozen_frames is {self.frozen_frames}; expected 0 (off) "
                             "to 1000")
        if self.unsure_error < self.unsure_warn:
            raise ValueError(f"health.unsure_error is {self.unsure_error}, below health."
                             f"unsure_warn {self.unsure_warn}; expected error >= warn")
        if self.withhold_free_at not in WITHHOLD_CHOICES:
            raise ValueError(f"health.withhold_free_at is {self.withhold_free_at!r}; expected "
                             f"one of {', '.join(WITHHOLD_CHOICES)}")

    def withholds_free(self, level: int) -> bool:
        """Whether a frame of ``level`` gets no free space in the ground outputs."""
        if self.withhold_free_at == "never":
            return False
        return level >= LEVEL_NAMES.index(self.withhold_free_at)


@dataclass(frozen=True)
class HealthReport:
    """One frame's health: its level, the reasons (worst first) and the figures measured."""

    level: int
    reasons: tuple[str, ...]
    figures: dict[str, float] = field(default_factory=dict)
    class_shares: tuple[float, ...] = ()

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.level]

    def summary(self) -> str:
        """One line: the level and its reasons."""
        return self.level_name.upper() + (": " + "; ".join(self.reasons) if self.reasons else "")


def image_figures(rgb: np.ndarray) -> dict[str, float]:
    """Luma mean and contrast, saturated and flat shares, sharpness and grain of a frame.

    Measured on a copy at most CHECK_WIDTH wide (area-averaged), so the cost does not grow with
    the camera's resolution and sensor noise counts as little as it does to the network.
    """
    height, width = rgb.shape[:2]
    if width > CHECK_WIDTH:
        step = max(1, width // (2 * CHECK_WIDTH))  # large frames: every step-th pixel first
        small = cv2.resize(rgb[::step, ::step],
                           (CHECK_WIDTH, max(1, round(height * CHECK_WIDTH / width))),
                           interpolation=cv2.INTER_AREA)
    else:
        small = rgb
    luma = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2GRAY)
    mean, std = (float(v[0][0]) for v in cv2.meanStdDev(luma))
    edges = cv2.Laplacian(luma, cv2.CV_16S)
    magnitude = np.abs(edges.ravel())
    rows, cols = (side // FLAT_BLOCK * FLAT_BLOCK for side in luma.shape)
    if rows and cols:
        blocks = luma[:rows, :cols].reshape(rows // FLAT_BLOCK, FLAT_BLOCK, cols // FLAT_BLOCK,
                                            FLAT_BLOCK).astype(np.float32)
        flat = float((blocks.std(axis=(1, 3)) < FLAT_STD).mean())
    else:  # smaller than one block
        flat = float(std < FLAT_STD)
    return {"luma mean": mean, "contrast": std / max(mean, 1.0),
            "saturated share": float(np.count_nonzero(luma >= 250)) / luma.size,
            "flat share": flat,
            "sharpness": float(edges.std()) / max(std, 1.0),
            "grain": float(np.partition(magnitude, len(magnitude) // 4)[len(magnitude) // 4])}


def reference_record(unsure_shares, unsure_confidence: float, frames: str) -> dict:
    """Return the health reference of weights (for metadata.metrics[HEALTH_REFERENCE]).

    ``unsure_shares``: each clean frame's unsure share at ``unsure_confidence``, as the check
    measures it; ``frames``: which frames they were (e.g. "CamVid test, 233 frames, 480x360").
    """
    shares = np.asarray(list(unsure_shares), dtype=np.float64)
    if not shares.size:
        raise ValueError("a health reference needs the unsure shares of at least one frame")
    return {"unsure_confidence": float(unsure_confidence), "frames": frames,
            "count": int(shares.size), "unsure_share_max": round(float(shares.max()), 4),
            "unsure_share_p95": round(float(np.percentile(shares, 95)), 4),
            "unsure_share_median": round(float(np.median(shares)), 4)}


def unsure_thresholds(metrics: dict, unsure_confidence: float) -> tuple[float, float, str]:
    """Return (unsure_warn, unsure_error, where they come from) for weights' ``metrics``.

    From the recorded reference (its highest clean share plus UNSURE_*_MARGIN, two decimals)
    where it was measured at ``unsure_confidence``; else HealthSettings' fixed defaults.
    """
    reference = metrics.get(HEALTH_REFERENCE) if isinstance(metrics, dict) else None
    defaults = HealthSettings()
    if not isinstance(reference, dict) or "unsure_share_max" not in reference:
        return (defaults.unsure_warn, defaults.unsure_error,
                "fixed defaults: the weights record no health reference")
    if not math.isclose(reference.get("unsure_confidence", -1.0), unsure_confidence):
        return (defaults.unsure_warn, defaults.unsure_error,
                f"fixed defaults: the weights' reference was measured at confidence "
                f"{reference.get('unsure_confidence')}, not {unsure_confidence:g}")
    highest = float(reference["unsure_share_max"])
    warn = round(min(1.0, highest + UNSURE_WARN_MARGIN), 2)
    error = round(min(1.0, highest + UNSURE_ERROR_MARGIN), 2)
    return warn, error, (f"the weights' reference: at most {100 * highest:.1f}% unsure on "
                         f"{reference.get('frames', 'their clean frames')}")


def settings_for_weights(metrics: dict) -> HealthSettings:
    """Return the default HealthSettings with the unsure thresholds of weights' ``metrics``."""
    warn, error, _ = unsure_thresholds(metrics, HealthSettings.unsure_confidence)
    return HealthSettings(unsure_warn=warn, unsure_error=error)


class HealthMonitor:
    """Checks frame after frame (it remembers the last frames for the frozen check)."""

    def __init__(self, settings: HealthSettings):
        self.settings = settings
        self._last_sample = None  # a strided sample of the last frame's pixels
        self._same_frames = 0  # frames in a row equal to the one before them
        self._last_stamp = None

    def update(self, settings: HealthSettings) -> None:
        """Check the next frames with ``settings`` (the stream's memory is kept)."""
        self.settings = settings

    def check(self, rgb: np.ndarray, stamp_ns: int | None, labels: np.ndarray,
              confidence: np.ndarray | None, num_classes: int) -> HealthReport:
        """Return the health of one frame: ``rgb`` in, ``labels`` and ``confidence`` out.

        ``confidence`` is the uint8 softmax maximum x 255 at the labels' size (None: the
        network's checks are skipped); ``stamp_ns`` the frame's stamp (None: no stamp check).
        """
        s = self.settings
        figures = image_figures(rgb)
        problems: list[tuple[int, str]] = []
        if figures["luma mean"] < s.dark_luma:
            problems.append((ERROR, f"dark: mean luma {figures['luma mean']:.1f} < "
                                    f"{s.dark_luma:g}"))
        if figures["saturated share"] > s.glare_share:
            problems.append((ERROR, f"glare: {100 * figures['saturated share']:.0f}% of the "
                                    f"pixels saturated > {100 * s.glare_share:g}%"))
        if figures["contrast"] < s.min_contrast:
            problems.append((ERROR, f"low contrast: {figures['contrast']:.2f} < "
                                    f"{s.min_contrast:g}"))
        if figures["flat share"] > s.max_flat_share:
            problems.append((ERROR, f"featureless: {100 * figures['flat share']:.0f}% of the "
                                    f"image flat > {100 * s.max_flat_share:g}% (covered lens?)"))
        if figures["sharpness"] < s.min_sharpness:
            problems.append((WARN, f"blurred: sharpness {figures['sharpness']:.2f} < "
                                   f"{s.min_sharpness:g}"))
        if figures["grain"] > s.max_grain:
            problems.append((WARN, f"noisy: grain {figures['grain']:.0f} > {s.max_grain:g}"))
        figures["same frames"] = float(self._frozen_count(rgb))
        if s.frozen_frames and figures["same frames"] >= s.frozen_frames:
            problems.append((ERROR, f"frozen: the same pixels for {int(figures['same frames'])}"
                                    f" frames (>= {s.frozen_frames})"))
        if stamp_ns is not None:
            if self._last_stamp is not None and stamp_ns <= self._last_stamp:
                problems.append((WARN, f"stale stamp: {stamp_ns / 1e9:.3f} s not after the "
                                       f"last frame's {self._last_stamp / 1e9:.3f} s"))
            self._last_stamp = stamp_ns
        step = max(1, math.isqrt(labels.size // RESULT_SAMPLES))
        labels = labels[::step, ::step]
        if confidence is not None:
            confidence = confidence[::step, ::step]
            unsure = float(np.count_nonzero(
                confidence < round(255 * s.unsure_confidence))) / max(confidence.size, 1)
            figures["unsure share"] = unsure
            figures["confidence mean"] = float(confidence.mean()) / 255.0
            if unsure > s.unsure_warn:
                level = ERROR if unsure > s.unsure_error else WARN
                limit = s.unsure_error if level == ERROR else s.unsure_warn
                problems.append((level, f"unsure network: {100 * unsure:.0f}% of the pixels "
                                        f"below confidence {s.unsure_confidence:g} > "
                                        f"{100 * limit:g}%"))
        shares = np.bincount(labels.ravel(), minlength=num_classes)[:num_classes] \
            / max(labels.size, 1)
        problems.sort(key=lambda p: -p[0])
        return HealthReport(max((p[0] for p in problems), default=OK),
                            tuple(p[1] for p in problems), figures,
                            tuple(float(v) for v in shares))

    def _frozen_count(self, rgb: np.ndarray) -> int:
        """Frames in a row (this one included) whose pixels equal the one before them, plus 1."""
        sample = np.ascontiguousarray(rgb[::7, ::5])
        if self._last_sample is not None and sample.shape == self._last_sample.shape \
                and np.array_equal(sample, self._last_sample):
            self._same_frames += 1
        else:
            self._same_frames = 0
        self._last_sample = sample
        return self._same_frames + 1
