"""How the ground outputs are made: camera pose, grid, footprint rule, point clouds; checked once.

One frozen object per configuration: the segmentation node builds a new one from its parameters
when one changes (``ground.*``), so a frame is mapped with one consistent set of values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lednet_ros.core.ground.camera_geometry import CameraPose
from lednet_ros.core.ground.footprints import (
    DEFAULT_FOOTPRINT_CONFIDENCE, DEFAULT_FOOTPRINT_RUN, check_footprint_run,
)
from lednet_ros.core.ground.depth import POINTS_FRAMES, SOURCES
from lednet_ros.core.ground.mapping import (
    DEFAULT_FREE_CONFIDENCE, DEFAULT_FREE_MARGIN, DEFAULT_MAX_HEIGHT, MAX_FREE_MARGIN, GridSpec,
)

MAX_POINTS_STEP = 64


@dataclass(frozen=True)
class GroundSettings:
    """The ground outputs' configuration (the node's ``ground.*`` parameters).

    Attributes:
        pose: the camera on the robot (unused with ``use_tf``: TF gives it per frame).
        grid: cell size and extent of grids and costmap.
        base_frame: frame of grids and points.
        use_tf: take the pose from TF instead of ``pose``.
        rectified: the images are rectified (camera_info's P, no distortion).
        points_step: every Nth pixel goes into the ground and free point clouds.
        footprint_run: a footprint's shortest run of obstacle pixels, fraction of the height.
        footprint_confidence: the confidence the run's surest pixel reaches (0: any).
        free_confidence: the confidence a free-group pixel needs to count as free (0: any).
        free_margin: cells around a cell holding anything but free groups that are not free.
        mirror_check: free only where the mirrored frame (segmented in the same pass) gives
            the pixel the same label at free_confidence too.
        obstacle_points_height, free_points_height: heights (m) of the Nav2 clouds.
        source: what the outputs are made from: depth where valid, flat ground elsewhere
            ("auto"), depth alone ("depth") or flat ground alone ("flat").
        max_height: with depth, points higher above the ground (m) are overhangs, left out.
        points_frame: the frame of the semantic point cloud: the depth image's or base_frame.

    Raises:
        ValueError: a value outside its range, named as the node's parameter (CameraPose and
            GridSpec name theirs as they do: "camera height", "grid resolution").
    """

    pose: CameraPose = field(default_factory=lambda: CameraPose(height=1.0, pitch=0.1))
    grid: GridSpec = field(default_factory=GridSpec)
    base_frame: str = "base_link"
    use_tf: bool = False
    rectified: bool = False
    points_step: int = 4
    footprint_run: float = DEFAULT_FOOTPRINT_RUN
    footprint_confidence: float = DEFAULT_FOOTPRINT_CONFIDENCE
    free_confidence: float = DEFAULT_FREE_CONFIDENCE
    free_margin: int = DEFAULT_FREE_MARGIN
    mirror_check: bool = True
    obstacle_points_height: float = 0.3
    free_points_height: float = 0.0
    source: str = "auto"
    max_height: float = DEFAULT_MAX_HEIGHT
    points_frame: str = "depth"

    def __post_init__(self):
        if not self.base_frame:
            raise ValueError("ground.base_frame is ''; expected a frame name such as base_link")
        if not 1 <= self.points_step <= MAX_POINTS_STEP:
            raise ValueError(f"ground.points_step is {self.points_step}; expected 1 to "
                             f"{MAX_POINTS_STEP}")
        check_footprint_run(self.footprint_run)
        if not 0 <= self.free_margin <= MAX_FREE_MARGIN:
            raise ValueError(f"ground.free_margin is {self.free_margin}; expected 0 to "
                             f"{MAX_FREE_MARGIN} cells")
        for name in ("footprint_confidence", "free_confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ground.{name} is {getattr(self, name)}; expected 0 to 1")
        if self.source not in SOURCES:
            raise ValueError(f"ground.source is {self.source!r}; expected one of "
                             f"{', '.join(SOURCES)}")
        if self.points_frame not in POINTS_FRAMES:
            raise ValueError(f"ground.points_frame is {self.points_frame!r}; expected one of "
                             f"{', '.join(POINTS_FRAMES)}")
        if not (math.isfinite(self.max_height) and self.max_height > 0):
            raise ValueError(f"ground.max_height is {self.max_height}; expected metres > 0")
        for name in ("obstacle_points_height", "free_points_height"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"ground.{name} is {getattr(self, name)}; expected metres")
