"""Scoring predicted label images against ground truth: pairing by stamp, datasets, reports.

No ROS import. Used by the live evaluator node (labels from the running segmentation node), by
the offline evaluation of a bag (evaluate_bag.py), so both give the same numbers for the same
frames, and by the out-of-domain evaluation of a dataset (evaluate_cityscapes.py). The confusion
matrix is the package's one implementation (metrics.ConfusionMatrix).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lednet_ros.core.data.datasets import keep_top
from lednet_ros.core.evaluation.metrics import ConfusionMatrix

REPORT_FILES = ("report.json", "report.md", "confusion.png")


class StampMatcher:
    """Pairs predictions with ground truth that carry the same stamp (integer nanoseconds).

    Either side may arrive first, in any order. An item waiting for its partner is dropped as
    unmatched once more than ``max_pending`` items of its kind wait (the oldest first), so a
    stream that never pairs cannot grow memory. An item whose stamp is already waiting on its
    side, or was paired among the last ``10 * max_pending`` pairs, is counted as a duplicate and
    ignored.
    """

    def __init__(self, max_pending: int = 100):
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.max_pending = max_pending
        self._waiting = {"prediction": OrderedDict(), "ground_truth": OrderedDict()}
        self.evicted = {"prediction": 0, "ground_truth": 0}
        self.duplicates = 0
        self._paired = OrderedDict()  # recently paired stamps, to recognise duplicates

    def add(self, side: str, stamp: int, item) -> tuple | None:
        """Add ``item`` on ``side`` ('prediction' or 'ground_truth'); the pair once complete.

        Returns ``(prediction, ground_truth)`` when the partner was waiting, else None.
        """
        other = "ground_truth" if side == "prediction" else "prediction"
        partner = self._waiting[other].pop(stamp, None)
        if partner is not None:
            self._paired[stamp] = None
            if len(self._paired) > 10 * self.max_pending:
                self._paired.popitem(last=False)
            return (item, partner) if side == "prediction" else (partner, item)
        waiting = self._waiting[side]
        if stamp in waiting or stamp in self._paired:
            self.duplicates += 1
            return None
        waiting[stamp] = item
        if len(waiting) > self.max_pending:
            waiting.popitem(last=False)
            self.evicted[side] += 1
        return None

    def unmatched(self, side: str) -> int:
        """Items of ``side`` that found no partner: dropped when too old, or waiting now."""
        return self.evicted[side] + len(self._waiting[side])


def score_dataset(segmenter, dataset, keep_top_fraction: float = 1.0,
                  progress=None) -> ConfusionMatrix:
    """Segment every frame of ``dataset`` and count it against its labels.

    Args:
        segmenter: a Segmenter whose classes are the dataset's.
        dataset: (RGB image, class ids) pairs (datasets.SegmentationDataset).
        keep_top_fraction: the fraction of rows kept from the top of image and labels before
            segmenting (the rest, a car's bonnet, is cut).
        progress: called with (frames done, frames in all) after each frame.
    """
    confusion = ConfusionMatrix(segmenter.num_classes)
    for index in range(len(dataset)):
        image, labels = dataset.load(index)
        image = keep_top(image, keep_top_fraction)
        confusion.update(keep_top(labels, keep_top_fraction), segmenter.segment(image))
        if progress is not None:
            progress(index + 1, len(dataset))
    return confusion


def stamp_nanoseconds(sec: int, nanosec: int) -> int:
    return int(sec) * 1_000_000_000 + int(nanosec)


@dataclass
class Evaluation:
    """Confusion matrix, pairing counts and latencies of one evaluation run."""

    class_names: list[str]
    max_pending: int = 100
    confusion: ConfusionMatrix = field(init=False)
    matcher: StampMatcher = field(init=False)
    latencies_ms: list[float] = field(default_factory=list)

    def __post_init__(self):
        self.confusion = ConfusionMatrix(len(self.class_names))
        self.matcher = StampMatcher(self.max_pending)
        self.matched_stamps: list[int] = []
        self.shape_mismatches = 0

    def add_prediction(self, stamp: int, labels: np.ndarray, latency_ms: float | None = None):
        """Add a predicted label image (H x W class ids).

        Live, ``latency_ms`` is its latency from the image stamp.
        """
        self._score(stamp, self.matcher.add("prediction", stamp, (labels, latency_ms)))

    def add_ground_truth(self, stamp: int, labels: np.ndarray) -> None:
        """Add a ground-truth label image (class ids; values >= the class count are ignored)."""
        self._score(stamp, self.matcher.add("ground_truth", stamp, labels))

    def _score(self, stamp: int, pair) -> None:
        if pair is None:
            return
        (prediction, latency_ms), target = pair
        if prediction.shape != target.shape:
            # A node publishing at the network's resolution: score at the ground truth's size.
            prediction = cv2.resize(prediction, (target.shape[1], target.shape[0]),
                                    interpolation=cv2.INTER_NEAREST)
            self.shape_mismatches += 1
        self.confusion.update(target, prediction)
        self.matched_stamps.append(stamp)
        if latency_ms is not None:
            self.latencies_ms.append(float(latency_ms))

    def summary(self) -> dict:
        """Everything the report holds, as JSON-compatible data."""
        scores = self.confusion.summary(self.class_names)
        latencies = np.asarray(self.latencies_ms)
        latency = None
        if latencies.size:
            latency = {"p50": float(np.percentile(latencies, 50)),
                       "p95": float(np.percentile(latencies, 95)),
                       "max": float(latencies.max()), "count": int(latencies.size)}
        for key in ("mean_iou", "pixel_accuracy"):
            if np.isnan(scores[key]):
                scores[key] = None  # JSON has no NaN: no pixel was scored
        return {
            "class_names": list(self.class_names),
            **scores,
            "frames": {
                "matched": len(self.matched_stamps),
                "ground_truth_without_prediction": self.matcher.unmatched("ground_truth"),
                "prediction_without_ground_truth": self.matcher.unmatched("prediction"),
                "duplicates": self.matcher.duplicates,
                "resized_predictions": self.shape_mismatches,
            },
            "latency_ms": latency,
            "matched_stamps": list(self.matched_stamps),
            "confusion_matrix": self.confusion.matrix.tolist(),
        }


def write_report(out_dir, summary: dict, title: str = "LEDNet evaluation") -> list[Path]:
    """report.json, report.md (readable tables) and confusion.png in ``out_dir``; their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in REPORT_FILES]
    json_path, md_path, png_path = paths
    _write_atomic(json_path, json.dumps(summary, indent=2).encode())
    _write_atomic(md_path, markdown_report(summary, title).encode())
    image = confusion_image(np.asarray(summary["confusion_matrix"]), summary["class_names"])
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("could not encode the confusion matrix image")
    _write_atomic(png_path, png.tobytes())
    return paths


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def _percent(value) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{100 * value:.2f}"


def markdown_report(summary: dict, title: str) -> str:
    frames = summary["frames"]
    lines = [f"# {title}", "",
             f"mIoU **{_percent(summary['mean_iou'])}%**, pixel accuracy "
             f"{_percent(summary['pixel_accuracy'])}% over {frames['matched']} matched frames.",
             "", "| frames | count |", "|---|---|"]
    lines += [f"| {name.replace('_', ' ')} | {count} |" for name, count in frames.items()]
    latency = summary.get("latency_ms")
    if latency:
        lines += ["", "Latency, image stamp to labels received: "
                  f"p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms, "
                  f"max {latency['max']:.1f} ms ({latency['count']} frames)."]
    lines += ["", "| class | IoU % |", "|---|---|"]
    lines += [f"| {name} | {_percent(iou)} |" for name, iou in summary["per_class_iou"].items()]
    return "\n".join(lines) + "\n"


def confusion_image(matrix: np.ndarray, class_names, cell: int = 36) -> np.ndarray:
    """Row-normalised confusion matrix (rows: ground truth) as a BGR heat map with labels."""
    n = len(class_names)
    rows = matrix.sum(axis=1, keepdims=True).astype(np.float64)
    normalised = np.divide(matrix, rows, out=np.zeros((n, n)), where=rows > 0)
    margin = 8 + 7 * max((len(name) for name in class_names), default=1)
    image = np.full((margin + n * cell + 8, margin + n * cell + 8, 3), 255, np.uint8)
    heat = cv2.applyColorMap((255 * normalised).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i, name in enumerate(class_names):
        y = margin + i * cell
        cv2.putText(image, name, (4, y + cell // 2 + 4), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(image, str(i), (margin + i * cell + cell // 3, margin - 6), font, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
        for j in range(n):
            x = margin + j * cell
            image[y:y + cell, x:x + cell] = heat[i, j]
            text = f"{100 * normalised[i, j]:.0f}"
            colour = (0, 0, 0) if normalised[i, j] > 0.6 else (255, 255, 255)
            cv2.putText(image, text, (x + 4, y + cell // 2 + 4), font, 0.33, colour, 1,
                        cv2.LINE_AA)
    return image
