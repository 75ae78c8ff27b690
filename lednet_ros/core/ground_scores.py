"""How far ground outputs made from predicted labels agree with those made from true labels.

Both label images go through the same GroundMapper, camera and grid; the true labels' maps are
the reference (their footprints from single pixels: true labels have no misread pixels). Scored,
summed over frames:

- costmap cells: how many of the cells the reference knows the prediction knows too, and the
  IoU of free (0) and of blocked (100) cells;
- obstacle points: the share within ``tolerance`` m of a reference obstacle point (precision)
  and the share of reference points with a predicted point that near (recall);
- free points: the share that falls on a cell the reference blocks (a clearing ray would erase
  a real obstacle there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lednet_ros.core.ground import GroundMaps, free_points, obstacle_points


@dataclass
class GroundAgreement:
    """Counts summed over frames; :meth:`percentages` turns them into the scores."""

    reference_known: int = 0
    both_known: int = 0
    free_both: int = 0
    free_either: int = 0
    blocked_both: int = 0
    blocked_either: int = 0
    obstacle_points: int = 0
    obstacle_points_near: int = 0
    reference_points: int = 0
    reference_points_near: int = 0
    free_points: int = 0
    free_points_on_blocked: int = 0

    def add(self, reference: GroundMaps, reference_labels: np.ndarray, predicted: GroundMaps,
            predicted_labels: np.ndarray, tolerance: float = 0.5) -> None:
        """Count one frame: maps of its true and of its predicted labels on the same grid."""
        truth, guess = reference.costmap(), predicted.costmap()
        if truth.shape != guess.shape:
            raise ValueError(f"costmaps of shapes {truth.shape} and {guess.shape}: expected "
                             "both frames mapped on the same grid")
        self.reference_known += int((truth >= 0).sum())
        self.both_known += int(((truth >= 0) & (guess >= 0)).sum())
        for value, name in ((0, "free"), (100, "blocked")):
            a, b = truth == value, guess == value
            setattr(self, f"{name}_both", getattr(self, f"{name}_both") + int((a & b).sum()))
            setattr(self, f"{name}_either", getattr(self, f"{name}_either") + int((a | b).sum()))
        ours, theirs = obstacle_points(predicted, 0.0), obstacle_points(reference, 0.0)
        self.obstacle_points += len(ours)
        self.reference_points += len(theirs)
        self.obstacle_points_near += int(_near(ours, theirs, tolerance).sum())
        self.reference_points_near += int(_near(theirs, ours, tolerance).sum())
        clearing = free_points(predicted, predicted_labels, step=1)
        col = ((clearing["x"] - reference.origin[0]) / reference.resolution).astype(np.int64)
        row = ((clearing["y"] - reference.origin[1]) / reference.resolution).astype(np.int64)
        inside = (row >= 0) & (row < truth.shape[0]) & (col >= 0) & (col < truth.shape[1])
        self.free_points += len(clearing)
        self.free_points_on_blocked += int((truth[row[inside], col[inside]] == 100).sum())

    def percentages(self) -> dict[str, float | None]:
        """Scores in percent (None where nothing was counted)."""
        def share(part: int, whole: int):
            return None if whole == 0 else 100.0 * part / whole

        return {
            "cells known": share(self.both_known, self.reference_known),
            "free IoU": share(self.free_both, self.free_either),
            "blocked IoU": share(self.blocked_both, self.blocked_either),
            "obstacle points precision": share(self.obstacle_points_near, self.obstacle_points),
            "obstacle points recall": share(self.reference_points_near, self.reference_points),
            "free points on blocked cells": share(self.free_points_on_blocked,
                                                  self.free_points),
        }


def _near(points: np.ndarray, others: np.ndarray, tolerance: float) -> np.ndarray:
    """Return per point whether one of ``others`` lies within ``tolerance`` m on the ground."""
    if len(points) == 0 or len(others) == 0:
        return np.zeros(len(points), dtype=bool)
    dx = points["x"][:, None] - others["x"][None, :]
    dy = points["y"][:, None] - others["y"][None, :]
    return ((dx * dx + dy * dy) <= tolerance * tolerance).any(axis=1)
