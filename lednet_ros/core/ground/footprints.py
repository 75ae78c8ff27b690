"""Where obstacles meet the ground in a label image: each column's footprint; no ROS.

With flat ground (core.ground.mapping), an obstacle is mapped only where it touches the ground:
in each image column the bottom of the lowest run of obstacle pixels long and sure enough.
"""

from __future__ import annotations

import math

import numpy as np

# a footprint's shortest run of obstacle pixels, as a fraction of the image height: 3% is a
# 0.3 m object 10 m away from a camera with a 55-degree vertical field of view (docs/nav2.md)
DEFAULT_FOOTPRINT_RUN = 0.03
# ...and the confidence its most confident pixel reaches (a road misread as tree is unsure)
DEFAULT_FOOTPRINT_CONFIDENCE = 0.7
MAX_FOOTPRINT_RUN = 0.5


def footprint_rows(obstacle: np.ndarray, min_run: int = 1, confidence: np.ndarray | None = None,
                   min_confidence: float = 0.0) -> np.ndarray:
    """Per column of an h x w bool mask: the row of its footprint, -1 where none.

    The footprint is the bottom row of the column's lowest run of at least ``min_run``
    consecutive True pixels whose most confident pixel reaches ``min_confidence`` (a fraction;
    ``confidence`` is the uint8 softmax maximum x 255 of each pixel). Shorter or unconfident
    runs below it (misread pixels) neither make a footprint nor hide what lies above them.
    ``min_run`` 1 and no confidence: the lowest True pixel.
    """
    if min_run < 1:
        raise ValueError(f"footprint run of {min_run} pixels; expected an integer >= 1")
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"footprint confidence {min_confidence}; expected 0 to 1")
    height, width = obstacle.shape
    flat = np.flatnonzero(obstacle.T)  # column by column, top to bottom: col * height + row
    footprint = np.full(width, -1, dtype=np.int32)
    if len(flat) == 0:
        return footprint
    starts = np.ones(len(flat), dtype=bool)
    starts[1:] = (np.diff(flat) != 1) | (flat[1:] % height == 0)
    first = np.flatnonzero(starts)
    lengths = np.diff(np.append(first, len(flat)))
    qualifies = lengths >= min_run
    if confidence is not None and min_confidence > 0:
        if confidence.shape != obstacle.shape:
            raise ValueError(f"confidence of shape {confidence.shape}; expected the labels' "
                             f"{obstacle.shape}")
        most = np.maximum.reduceat(confidence.T.ravel()[flat], first)
        qualifies &= most >= round(255 * min_confidence)
    cols, rows = np.divmod(flat[first] + lengths - 1, height)
    np.maximum.at(footprint, cols[qualifies], rows[qualifies])
    return footprint


def check_footprint_run(fraction: float) -> float:
    """``fraction`` when it is a footprint run 0..MAX_FOOTPRINT_RUN of the image height."""
    if not 0.0 <= fraction <= MAX_FOOTPRINT_RUN:
        raise ValueError(f"ground.footprint_run is {fraction} of the image height; expected 0 "
                         f"to {MAX_FOOTPRINT_RUN}")
    return fraction


def footprint_run(fraction: float, label_height: int) -> int:
    """Pixels in a footprint run: ``fraction`` of the label image's height, at least 1."""
    check_footprint_run(fraction)
    return max(1, math.ceil(fraction * label_height - 1e-9))


def in_front_or_footprint(rows: np.ndarray, footprint: np.ndarray, obstacle: np.ndarray,
                           depth: int) -> np.ndarray:
    """Return which pixels are mapped.

    Ground at or below its column's footprint row, and obstacle pixels in the ``depth`` rows
    ending at the footprint (footprint -1: none in the column).
    """
    above = footprint - rows  # int32: rows from the pixel down to its column's footprint
    return np.where(obstacle, above.view(np.uint32) < depth, above <= 0)  # negative: huge
