"""Per-class occupancy: the share of each class, overall and per cell of a region grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Occupancy:
    """Pixel counts per class, for the whole image and per cell of a rows x cols grid."""

    counts: np.ndarray  # (num_classes,) int64
    cell_counts: np.ndarray  # (rows, cols, num_classes) int64

    @property
    def fractions(self) -> np.ndarray:
        return _fractions(self.counts)

    @property
    def cell_fractions(self) -> np.ndarray:
        return _fractions(self.cell_counts)


def _fractions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros(counts.shape), where=total > 0)


def grid_edges(length: int, cells: int) -> np.ndarray:
    """Boundaries of ``cells`` near-equal spans of ``length`` pixels (cells + 1 values)."""
    return np.linspace(0, length, cells + 1).round().astype(np.int64)


def class_occupancy(labels: np.ndarray, num_classes: int,
                    grid: tuple[int, int] = (1, 1)) -> Occupancy:
    """Count the pixels of each class, overall and in each cell of a rows x cols grid.

    Values outside [0, num_classes) (void) are not counted.
    """
    rows, cols = grid
    height, width = labels.shape
    if rows < 1 or cols < 1 or rows > height or cols > width:
        raise ValueError(f"region grid {rows}x{cols} does not fit a {width}x{height} label image")
    row_of = np.repeat(np.arange(rows), np.diff(grid_edges(height, rows)))
    col_of = np.repeat(np.arange(cols), np.diff(grid_edges(width, cols)))
    cell = (row_of[:, None] * cols + col_of[None, :]) * num_classes
    valid = labels < num_classes
    index = (cell + labels)[valid] if not valid.all() else (cell + labels).ravel()
    counts = np.bincount(index, minlength=rows * cols * num_classes)
    cell_counts = counts.reshape(rows, cols, num_classes)
    return Occupancy(counts=cell_counts.sum(axis=(0, 1)), cell_counts=cell_counts)
