"""Where things are: per-group occupancy on the ground around the robot and a costmap.

Each label pixel's ray is intersected with the flat ground (z = 0 of the base frame, REP-103);
rays at or above the horizon never mark a cell. Far cells, smaller than a pixel's patch of
ground, are hit by no pixel's ray: each takes the pixel its centre projects into, so the far grid
has no gaps between image rows. Classes in no group (sky, void) are not mapped.

Ground groups (drivable, sidewalk: see class_groups) are mapped pixel by pixel. An obstacle group
is mapped only where it touches the ground: in each image column the bottom of the lowest run of
obstacle pixels long and sure enough (footprint_rows: misread pixels below it count as nothing)
is the obstacle's footprint, and every pixel above the run's bottom rows is left out, so the cells
behind the obstacle stay unknown. Ground pixels seen above an obstacle (road beyond a low object)
are left out on purpose: with one footprint per column, counting them would show free road where
a second obstacle stands behind the first, and flat-ground projection is least trustworthy there.
Roll is assumed small (image columns near vertical).

Grids are laid out as nav_msgs/OccupancyGrid with an identity orientation, so ``grid.ravel()``
is its ``data``: ``grid[row, col]``, columns along base x (forward), rows along base y (left);
cell (row, col) spans x in origin_x + [col, col + 1) * resolution, and likewise y with row. The
origin is (camera x, camera y - width / 2): the grid starts at the camera and is centred on it.

    mapper = GroundMapper(default_class_groups("camvid", CAMVID.names))
    maps = mapper.map(labels, intrinsics, pose, GridSpec(resolution=0.1, range=20, width=10))
    maps.group_grids()["drivable"]  # int8 percent of the cell's mapped pixels, -1 unknown
    maps.costmap()                  # int8: 0 drivable, 100 obstacle or not drivable, -1 unknown
    occupancy_grid_message(maps.costmap(), maps.resolution, maps.origin, header)  # ros/
    # point clouds (RViz's ground_points, Nav2's costmap layers): core.ground.clouds
    costmap_picture(maps.costmap())  # bird's-eye RGB picture, forward up

The (pixel, cell) lookup is built once per (intrinsics, pose, label size, grid), compared by
value, and reused: a frame then costs a few table look-ups and one np.bincount. Building takes
about 0.15 s of CPU at 480 x 360, so pass a pose that changes only when the mounting does (a
static transform), not one that jitters every frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from lednet_ros.core.ground.camera_geometry import CameraPose, Intrinsics
from lednet_ros.core.ground.class_groups import NO_GROUP, ClassGroups
from lednet_ros.core.ground.depth import depth_pixels
from lednet_ros.core.ground.footprints import in_front_or_footprint, footprint_rows

MAX_CELLS_PER_SIDE = 4096
# the confidence a free-group pixel needs, in the frame and (ground.mirror_check, on by default)
# in its mirror image, to count as free: unsure road is no free space (measured on the 7
# Cityscapes frames: docs/health.md)
DEFAULT_FREE_CONFIDENCE = 0.8
# cells next to one holding anything else that are not free either (kerbs: road/sidewalk
# confusion); 0 with the mirror check, which finds those errors at a lower cost in free space
DEFAULT_FREE_MARGIN = 0
# with depth: points higher than this above the ground are left out (overhangs, ceilings)
DEFAULT_MAX_HEIGHT = 2.0
UNMAPPED = 255  # a class id in no group: pixels the flat-ground lookup leaves alone
MAX_FREE_MARGIN = 10
UNKNOWN = -1
POINT_DTYPE = np.dtype({"names": ["x", "y", "z", "rgb", "label"],
                        "formats": [np.float32, np.float32, np.float32, np.float32, np.uint8],
                        "offsets": [0, 4, 8, 12, 16], "itemsize": 20})
XYZ_DTYPE = np.dtype([("x", np.float32), ("y", np.float32), ("z", np.float32)])


@dataclass(frozen=True)
class GridSpec:
    """The grid: ``resolution`` m per cell, ``range`` m ahead of the camera, ``width`` m across."""

    resolution: float = 0.1
    range: float = 20.0
    width: float = 10.0

    def __post_init__(self):
        for name in ("resolution", "range", "width"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"grid {name} {value}; expected a finite number > 0 (metres)")
        rows, cols = self.shape
        if max(rows, cols) > MAX_CELLS_PER_SIDE:
            raise ValueError(f"grid of {self.width} x {self.range} m at {self.resolution} m per "
                             f"cell needs {rows} x {cols} cells; expected at most "
                             f"{MAX_CELLS_PER_SIDE} per side: coarsen the resolution")

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols): cells across (y) and ahead (x)."""
        return (max(1, math.ceil(self.width / self.resolution - 1e-6)),
                max(1, math.ceil(self.range / self.resolution - 1e-6)))

    def origin(self, pose: CameraPose) -> tuple[float, float]:
        """(x, y) of the grid's corner cell (0, 0) in the base frame."""
        return pose.x, pose.y - self.width / 2


@dataclass(frozen=True)
class GroundLookup:
    """(pixel, cell) pairs of a label image, built once and used for every frame.

    First each pixel whose ray lands on the grid, with its cell (``forward`` pairs); then each
    cell no such ray hit, with the pixel its centre projects into.
    """

    label_shape: tuple[int, int]
    grid_shape: tuple[int, int]
    origin: tuple[float, float]
    resolution: float
    pixels: np.ndarray  # (n,) int32 flat pixel index (row-major) of each pair
    cells: np.ndarray  # (n,) int32 flat cell index (row-major) of each pair
    rows: np.ndarray  # (n,) int32 image row of each pair's pixel
    cols: np.ndarray  # (n,) int32 image column of each pair's pixel
    forward: int  # how many leading pairs come from a pixel's own ray (the rest fill cells)
    pixel_points: np.ndarray  # (h, w) XYZ_DTYPE each pixel's ground point, NaN off the grid


def build_lookup(intrinsics: Intrinsics, pose: CameraPose, label_shape: tuple[int, int],
                 grid: GridSpec) -> GroundLookup:
    """Project a ``label_shape`` (h, w) label image onto the ground grid and back.

    Far cells can be smaller than a pixel's ground footprint, so no pixel's ray hits them; each
    gets the pixel its centre projects into (distortion honoured), if that pixel sees the ground.

    Raises:
        ValueError: the pose sees no ground, or no pixel lands on the grid.
    """
    height, width = label_shape
    camera = intrinsics.scaled(width, height)
    normal = camera.pixel_rays()
    rays = normal @ pose.rotation().T
    down = rays[:, 2] < -1e-12
    if not down.any():
        raise ValueError(f"camera pose {pose} sees no ground: every ray of the {width}x{height} "
                         f"image points at or above the horizon (pitch {pose.pitch} rad; "
                         "positive looks down)")
    distance = -pose.height / np.where(down, rays[:, 2], -1.0)
    x = pose.x + distance * rays[:, 0]
    y = pose.y + distance * rays[:, 1]
    rows, cols = grid.shape
    origin = grid.origin(pose)
    col = (x - origin[0]) / grid.resolution
    row = (y - origin[1]) / grid.resolution
    on_grid = down & (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
    if not on_grid.any():
        raise ValueError(f"no pixel of the {width}x{height} image lands on the grid {grid} "
                         f"from camera pose {pose}; expected the camera to see the ground ahead")
    forward = np.flatnonzero(on_grid)
    cells = row[forward].astype(np.int64) * cols + col[forward].astype(np.int64)
    missed = np.ones(rows * cols, dtype=bool)
    missed[cells] = False
    missed_cells = np.flatnonzero(missed)
    seen_by = _pixels_seeing(missed_cells, camera, pose, grid, normal)
    seen = (seen_by >= 0) & down[np.maximum(seen_by, 0)]
    pixels = np.concatenate([forward, seen_by[seen]]).astype(np.int32)
    pixel_points = np.full(height * width, np.nan, dtype=XYZ_DTYPE)
    pixel_points["x"][forward], pixel_points["y"][forward] = x[forward], y[forward]
    pixel_points["z"][forward] = 0.0
    return GroundLookup((height, width), (rows, cols), origin, grid.resolution, pixels,
                        np.concatenate([cells, missed_cells[seen]]).astype(np.int32),
                        pixels // width, pixels % width, len(forward),
                        pixel_points.reshape(height, width))


def _pixels_seeing(cells: np.ndarray, camera: Intrinsics, pose: CameraPose, grid: GridSpec,
                   normal: np.ndarray) -> np.ndarray:
    """Return the flat pixel index each cell centre projects into, -1 outside the image."""
    cell_row, cell_col = np.divmod(cells, grid.shape[1])
    origin = grid.origin(pose)
    centres = np.stack([origin[0] + (cell_col + 0.5) * grid.resolution,
                        origin[1] + (cell_row + 0.5) * grid.resolution,
                        np.zeros(len(cells))], axis=1)
    optical = (centres - pose.translation()) @ pose.rotation()
    ahead = optical[:, 2] > 1e-9
    ratio = optical[:, :2] / np.where(ahead, optical[:, 2], 1.0)[:, None]
    # inside the image's field of view, where the distortion polynomial is valid
    low, high = normal[:, :2].min(axis=0), normal[:, :2].max(axis=0)
    inside = ahead & np.all((ratio >= low) & (ratio <= high), axis=1)
    if any(camera.distortion) and inside.any():
        points = np.concatenate([ratio[inside], np.ones((inside.sum(), 1))], axis=1)
        uv = np.full((len(cells), 2), -1.0)
        uv[inside] = cv2.projectPoints(points, np.zeros(3), np.zeros(3), camera.matrix(),
                                       np.array(camera.distortion))[0].reshape(-1, 2)
    else:
        uv = ratio * [camera.fx, camera.fy] + [camera.cx, camera.cy]
    u, v = np.round(uv[:, 0]), np.round(uv[:, 1])
    valid = inside & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    return np.where(valid, v * camera.width + u, -1).astype(np.int64)


@dataclass(frozen=True)
class GroundMaps:
    """One frame on the grid: pixel counts per group and cell, and which lookup pairs counted."""

    groups: ClassGroups
    counts: np.ndarray  # (groups, rows, cols) int64 mapped pixels per group and cell
    origin: tuple[float, float]
    resolution: float
    lookup: GroundLookup
    kept: np.ndarray  # (pairs,) bool: the lookup's (pixel, cell) pairs that were counted
    footprint: np.ndarray  # (w,) int32 each column's footprint row, -1 where none
    labels: np.ndarray  # (h, w) uint8 the frame's class ids
    # (rows, cols) bool, or None: cells where nothing is called free (free cells unknown, the
    # free groups' grids unknown, their free-group pixels not in kept: no clearing points);
    # the counts stay the evidence
    withheld: np.ndarray | None = None
    # with depth: (h, w, 3) float32 each pixel's measured point in the base frame (NaN none),
    # and (h, w) bool the pixels mapped at it (the others went through the lookup, if at all)
    depth_points: np.ndarray | None = None
    depth_kept: np.ndarray | None = None

    @cached_property
    def mapped(self) -> np.ndarray:
        """(h, w) bool: the pixels mapped on the grid by their own ray.

        Ground in front of its column's footprint and the footprint's run depth, where the
        pixel's ray lands on the grid: the counted pairs among the lookup's leading ones (one
        per such pixel). Sky, classes in no group, other obstacle pixels and everything above
        the footprint are not.
        """
        lookup = self.lookup
        mapped = np.zeros(self.labels.size, dtype=bool)
        mapped[lookup.pixels[:lookup.forward]] = self.kept[:lookup.forward]
        mapped = mapped.reshape(self.labels.shape)
        return mapped if self.depth_kept is None else mapped | self.depth_kept

    @cached_property
    def points(self) -> np.ndarray:
        """(h, w) XYZ_DTYPE each pixel's point: measured where mapped from depth, else flat."""
        if self.depth_kept is None:
            return self.lookup.pixel_points
        points = self.lookup.pixel_points.copy()
        xyz = points.view(np.float32).reshape(*points.shape, 3)
        xyz[self.depth_kept] = self.depth_points[self.depth_kept]
        return points

    @property
    def observed(self) -> np.ndarray:
        """(rows, cols) mapped pixels per cell, all groups together."""
        return self.counts.sum(axis=0)

    def group_grids(self) -> dict[str, np.ndarray]:
        """Group name -> int8 grid: percent (0..100) of the cell's mapped pixels, -1 unknown.

        The free groups' grids are unknown in the ``withheld`` cells.
        """
        observed = self.observed
        percent = (self.counts * 100 + observed // 2) // np.maximum(observed, 1)
        percent[:, observed == 0] = UNKNOWN
        if self.withheld is not None:
            for index in np.flatnonzero(self.groups.is_free):
                percent[index][self.withheld] = UNKNOWN
        return {name: grid.astype(np.int8)
                for name, grid in zip(self.groups.names, percent, strict=True)}

    def costmap(self, min_obstacle_pixels: int = 1) -> np.ndarray:
        """Return the costmap: an int8 grid of 0 (free), 100 (blocked) or -1 (unknown).

        A cell is blocked where at least ``min_obstacle_pixels`` obstacle footprints fall, or
        where drivable groups hold no more than half of its mapped pixels. The ``withheld``
        cells that would be free are unknown.
        """
        if min_obstacle_pixels < 1:
            raise ValueError(f"min_obstacle_pixels {min_obstacle_pixels}; expected >= 1")
        observed = self.observed
        obstacle = self.counts[list(self.groups.is_obstacle)].sum(axis=0)
        drivable = self.counts[list(self.groups.is_free)].sum(axis=0)
        blocked = (obstacle >= min_obstacle_pixels) | (2 * drivable <= observed)
        costmap = np.where(blocked, 100, 0).astype(np.int8)
        costmap[observed == 0] = UNKNOWN
        if self.withheld is not None:
            costmap[self.withheld & ~blocked] = UNKNOWN
        return costmap


class GroundMapper:
    """Maps label images onto the ground grid, caching the pixel -> cell lookup.

    The lookup is rebuilt only when the intrinsics, pose, label size or grid change; ``builds``
    counts how many times it was built. The cache is one (key, lookup) pair, replaced whole, so
    a thread checking a new pose (the node's parameter check) and the frame thread can share it.
    """

    def __init__(self, groups: ClassGroups):
        self.groups = groups
        self._group_lut = groups.group_lut()
        self._obstacle_lut = groups.class_table(groups.is_obstacle)
        self._free_lut = groups.class_table(groups.is_free)
        self._cached = (None, None)  # (key, lookup)
        self.builds = 0

    def lookup(self, intrinsics: Intrinsics, pose: CameraPose, label_shape: tuple[int, int],
               grid: GridSpec) -> GroundLookup:
        """Return the lookup for these inputs: the cached one, or a new one (``builds`` + 1)."""
        key = (intrinsics, pose, tuple(label_shape), grid)
        cached_key, lookup = self._cached
        if key != cached_key:
            lookup = build_lookup(intrinsics, pose, tuple(label_shape), grid)
            self._cached = (key, lookup)
            self.builds += 1
        return lookup

    def map(self, labels: np.ndarray, intrinsics: Intrinsics, pose: CameraPose,
            grid: GridSpec = GridSpec(), min_run: int = 1, confidence: np.ndarray | None = None,
            min_confidence: float = 0.0, free_confidence: float = 0.0, free_margin: int = 0,
            withhold_free: bool = False, depth_points: np.ndarray | None = None,
            depth_only: bool = False, max_height: float = DEFAULT_MAX_HEIGHT,
            mirror_confidence: np.ndarray | None = None) -> GroundMaps:
        """Per-group pixel counts on the grid for an h x w uint8 label image.

        Footprints as footprint_rows(``min_run``, ``confidence``, ``min_confidence``). The
        bottom ``min_run`` rows of each footprint's run are mapped as the obstacle (where they
        meet the ground: the footprint's depth, as uncertain as the run is tall); other obstacle
        pixels are left out. Free-group pixels less sure than ``free_confidence`` (a fraction;
        needs ``confidence``) are left out too: unsure road is no evidence of free space; with
        ``mirror_confidence`` (h x w uint8: the mirrored frame's confidence in each pixel's
        label, 0 where its label differs; core.runtime.pipeline) also those the mirrored frame
        is less sure of, or labels otherwise.
        Free is withheld (GroundMaps.withheld) from the cells within ``free_margin`` cells of
        one that holds anything but free-group pixels (a kerb, an obstacle: where road and
        sidewalk are confused), and with ``withhold_free`` from every cell.

        ``depth_points`` (h x w x 3 base-frame points, NaN where no depth: core.ground.depth):
        each pixel with depth is mapped at its measured x, y (obstacles with no footprint rule,
        those above ``max_height`` m left out: overhangs), the others through the flat-ground
        lookup, or not at all with ``depth_only``.

        Raises:
            ValueError: labels that are not a 2-D uint8 array, a lookup that cannot be built,
                or a confidence floor without the confidence.
        """
        if labels.ndim != 2 or labels.dtype != np.uint8:
            raise ValueError(f"labels of shape {labels.shape} and dtype {labels.dtype}; "
                             "expected an h x w uint8 array of class ids")
        lookup = self.lookup(intrinsics, pose, labels.shape, grid)
        rows, cols = lookup.grid_shape
        every = labels
        if depth_points is not None:
            depth = depth_pixels(depth_points, labels, self._group_lut, lookup.origin,
                                 lookup.resolution, lookup.grid_shape, max_height)
            labels = np.full_like(every, UNMAPPED) if depth_only else every.copy()
            labels[depth.measured] = UNMAPPED
        if depth_points is not None and (depth_only or depth.measured.all()):
            footprint = np.full(labels.shape[1], -1, dtype=np.int32)  # no flat ground at all
            group = np.full(len(lookup.pixels), NO_GROUP, dtype=np.int16)
            kept = np.zeros(len(lookup.pixels), dtype=bool)
        else:
            obstacle = np.take(self._obstacle_lut, labels)
            footprint = footprint_rows(obstacle, min_run, confidence, min_confidence)
            group = np.take(self._group_lut, np.take(labels, lookup.pixels))
            kept = (group != NO_GROUP) & in_front_or_footprint(
                lookup.rows, footprint[lookup.cols], np.take(obstacle, lookup.pixels), min_run)
        if free_margin < 0:
            raise ValueError(f"free margin {free_margin}; expected cells >= 0")
        free = None
        if mirror_confidence is not None:
            if mirror_confidence.shape != labels.shape or mirror_confidence.dtype != np.uint8:
                raise ValueError(f"mirror confidence of shape {mirror_confidence.shape} and "
                                 f"dtype {mirror_confidence.dtype}; expected a uint8 array of "
                                 f"the labels' shape {labels.shape}")
            free = np.take(self._free_lut, np.take(labels, lookup.pixels))
            mirror_floor = max(1, round(255 * free_confidence))  # 0: labelled otherwise
            mirror_unsure = mirror_confidence < mirror_floor
            kept &= ~free | ~np.take(mirror_unsure, lookup.pixels)
        if free_confidence > 0:
            if not 0.0 <= free_confidence <= 1.0:
                raise ValueError(f"free confidence {free_confidence}; expected 0 to 1")
            if confidence is None or confidence.shape != labels.shape:
                raise ValueError("a free-space confidence floor needs the confidence at the "
                                 f"labels' size {labels.shape}; got "
                                 f"{None if confidence is None else confidence.shape}")
            if free is None:
                free = np.take(self._free_lut, np.take(labels, lookup.pixels))
            kept &= ~free | (np.take(confidence, lookup.pixels) >= round(255 * free_confidence))
        counts = np.bincount(group[kept].astype(np.int64) * (rows * cols) + lookup.cells[kept],
                             minlength=len(self.groups.names) * rows * cols)
        if depth_points is not None:
            if free_confidence > 0:
                depth.drop(np.take(self._free_lut, every) & (
                    confidence < round(255 * free_confidence)))
            if mirror_confidence is not None:
                depth.drop(np.take(self._free_lut, every) & mirror_unsure)
            counts += depth.counts(len(self.groups.names), rows * cols)
        counts = counts.reshape(-1, rows, cols)
        withheld = None
        if withhold_free:
            withheld = np.ones((rows, cols), dtype=bool)
        elif free_margin > 0:
            other = counts.sum(axis=0) > counts[list(self.groups.is_free)].sum(axis=0)
            side = 2 * int(free_margin) + 1
            withheld = cv2.dilate(other.astype(np.uint8), np.ones((side, side), np.uint8)) > 0
        if withheld is not None:
            if free is None:
                free = np.take(self._free_lut, np.take(labels, lookup.pixels))
            kept = kept & ~(free & withheld.ravel()[lookup.cells])
            if depth_points is not None:
                depth.drop(np.take(self._free_lut, every) & withheld.ravel()[depth.cell])
        return GroundMaps(self.groups, counts, lookup.origin, lookup.resolution, lookup, kept,
                          footprint, every, withheld, depth_points,
                          None if depth_points is None else depth.kept)


def costmap_picture(costmap: np.ndarray) -> np.ndarray:
    """Return a bird's-eye HxWx3 uint8 RGB picture of an int8 grid: forward up, left to the left.

    Free (0) is white, cost 100 dark, values between shaded linearly, unknown (-1) mid grey.
    """
    view = costmap[::-1, ::-1].T.astype(np.int16)
    shade = (255 - np.clip(view, 0, 100) * 2.2).astype(np.uint8)
    shade[view < 0] = 128
    return np.repeat(shade[:, :, None], 3, axis=2)
