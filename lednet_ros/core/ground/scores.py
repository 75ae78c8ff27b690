"""How far ground outputs made from predicted labels agree with those made from true labels.

Both label images go through the same GroundMapper, camera and grid; the true labels' maps are
the reference (their footprints from single pixels: true labels have no misread pixels). Scored,
summed over frames:

- costmap cells: how many of the cells the reference knows the prediction knows too, the IoU of
  free (0) and of blocked (100) cells, the share of cells called free that the reference blocks,
  and the share of the reference's obstacle cells (an obstacle footprint in them) that the
  prediction blocks within one cell;
- obstacle points: the share within ``tolerance`` m of a reference obstacle point (precision)
  and the share of reference points with a predicted point that near (recall);
- free points: the share that falls on a cell the reference blocks (a clearing ray would erase
  a real obstacle there).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lednet_ros.core.ground.clouds import free_points, obstacle_points
from lednet_ros.core.ground.mapping import GroundMaps


@dataclass
class GroundAgreement:
    """Counts summed over frames; :meth:`percentages` turns them into the scores."""

    reference_known: int = 0
    both_known: int = 0
    free_both: int = 0
    free_either: int = 0
    blocked_both: int = 0
    blocked_either: int = 0
    called_free: int = 0
    called_free_blocked: int = 0
    obstacle_cells: int = 0
    obstacle_cells_blocked: int = 0
    obstacle_points: int = 0
    obstacle_points_near: int = 0
    reference_points: int = 0
    reference_points_near: int = 0
    free_points: int = 0
    free_points_on_blocked: int = 0

    def add(self, reference: GroundMaps, predicted: GroundMaps, tolerance: float = 0.5) -> None:
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
        self.called_free += int((guess == 0).sum())
        self.called_free_blocked += int(((guess == 0) & (truth == 100)).sum())
        obstacle = reference.counts[list(reference.groups.is_obstacle)].sum(axis=0) > 0
        near_blocked = cv2.dilate((guess == 100).astype(np.uint8), np.ones((3, 3), np.uint8))
        self.obstacle_cells += int(obstacle.sum())
        self.obstacle_cells_blocked += int((obstacle & (near_blocked > 0)).sum())
        ours, theirs = obstacle_points(predicted, 0.0), obstacle_points(reference, 0.0)
        self.obstacle_points += len(ours)
        self.reference_points += len(theirs)
        self.obstacle_points_near += int(_near(ours, theirs, tolerance).sum())
        self.reference_points_near += int(_near(theirs, ours, tolerance).sum())
        clearing = free_points(predicted, step=1)
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
            "free cells truly blocked": share(self.called_free_blocked, self.called_free),
            "obstacle cells blocked (1 cell)": share(self.obstacle_cells_blocked,
                                                     self.obstacle_cells),
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
