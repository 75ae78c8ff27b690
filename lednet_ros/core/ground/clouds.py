"""Point clouds from one frame's GroundMaps (ground.mapping); no ROS.

Pixels mapped from depth give their measured points, the others their flat-ground points.

- ground_points: the mapped pixels' ground points with colour and label (RViz);

Nav2's costmap layers:
- obstacle_points: one point per image column with a footprint, at a height inside an
  ObstacleLayer/VoxelLayer marking band;
- free_points: ground points of free-group pixels in front of the footprints, for clearing (a ray
  from the camera to each crosses only ground seen free);
- aligned_points: one point per label pixel (organized like the label image), its ground point or
  NaN, for a semantic costmap layer that pairs labels and points pixel by pixel.

Nav2's clouds are XYZ_DTYPE (x, y, z float32), all in the base frame of the maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lednet_ros.core.ground.mapping import POINT_DTYPE, XYZ_DTYPE, GroundMaps


def aligned_points(maps: GroundMaps) -> np.ndarray:
    """H x w XYZ_DTYPE: each label pixel's point, NaN where it is not mapped.

    The measured point where the pixel was mapped from depth, else its flat-ground point (z 0).
    One point per pixel of the frame, row-major, for an organized PointCloud2 aligned with the
    label image (what a semantic costmap layer pairs pixel by pixel).
    """
    xyz = maps.points.view(np.float32).reshape(*maps.labels.shape, 3)
    return np.where(maps.mapped[..., None], xyz, np.float32(np.nan)).view(XYZ_DTYPE)[..., 0]


def obstacle_points(maps: GroundMaps, height: float, step: int = 4) -> np.ndarray:
    """XYZ_DTYPE: one point per column with a footprint on the grid, ``height`` m above it.

    With depth, also every ``step``-th obstacle pixel (rows and columns) mapped from depth, at
    its measured point (Nav2's min/max_obstacle_height then apply to its real height).
    """
    columns = np.flatnonzero(maps.footprint >= 0)
    points = maps.lookup.pixel_points[maps.footprint[columns], columns]
    points = points[~np.isnan(points["x"])]
    points["z"] = height
    if maps.depth_kept is None:
        return points
    obstacle = np.take(maps.groups.class_table(maps.groups.is_obstacle),
                       maps.labels[::step, ::step]) & maps.depth_kept[::step, ::step]
    return np.concatenate([points, maps.points[::step, ::step][obstacle]])


def free_points(maps: GroundMaps, step: int = 4, height: float = 0.0) -> np.ndarray:
    """XYZ_DTYPE: ground points of free-group pixels in front of their column's footprint.

    Every ``step``-th pixel along rows and columns, ``height`` m above the ground: clearing
    points (a ray from the camera to each crosses only ground seen free).
    """
    if step < 1:
        raise ValueError(f"point step {step}; expected an integer >= 1")
    # mapped keeps non-obstacle pixels only below their column's footprint (which is an
    # obstacle pixel, and no group is both obstacle and free): in front of it
    free = np.take(maps.groups.class_table(maps.groups.is_free), maps.labels[::step, ::step])
    mask = maps.mapped[::step, ::step] & free
    points = maps.points[::step, ::step][mask]
    if maps.depth_kept is None:
        points["z"] = height
    else:  # measured points keep their height
        points["z"][~maps.depth_kept[::step, ::step][mask]] = height
    return points


def ground_points(maps: GroundMaps, labels: np.ndarray, class_colors: Sequence[Sequence[int]],
                  step: int = 4, image: np.ndarray | None = None) -> np.ndarray:
    """Ground points (POINT_DTYPE: x, y, z, rgb, label) of the pixels ``maps`` mapped.

    ``labels`` is the frame ``maps`` came from. Every ``step``-th pixel along rows and along
    columns is kept. ``rgb`` holds 0x00RRGGBB in a float32's bytes, as PointCloud2's "rgb" field
    expects: the camera ``image`` (h x w x 3 RGB) colour when given, else the class colour.
    """
    if step < 1:
        raise ValueError(f"point step {step}; expected an integer >= 1")
    lookup = maps.lookup
    if labels.shape != lookup.label_shape:
        raise ValueError(f"labels of shape {labels.shape}; expected the mapped frame's "
                         f"{lookup.label_shape}")
    forward = np.flatnonzero(maps.kept[: lookup.forward])
    forward = forward[(lookup.rows[forward] % step == 0) & (lookup.cols[forward] % step == 0)]
    pixels = lookup.pixels[forward]
    if maps.depth_kept is not None:
        sampled = np.zeros(labels.shape, dtype=bool)
        sampled[::step, ::step] = maps.depth_kept[::step, ::step]
        pixels = np.concatenate([pixels, np.flatnonzero(sampled)])
    label = labels.ravel()[pixels]
    if image is not None:
        if image.shape != labels.shape + (3,):
            raise ValueError(f"image of shape {image.shape}; expected {labels.shape + (3,)}")
        rgb = image.reshape(-1, 3)[pixels].astype(np.uint32)
    else:
        table = np.zeros((256, 3), dtype=np.uint32)
        table[: len(class_colors)] = np.asarray(class_colors, dtype=np.uint32).reshape(-1, 3)
        rgb = table[label]
    points = np.zeros(len(pixels), dtype=POINT_DTYPE)
    ground = maps.points.ravel()[pixels]
    points["x"], points["y"], points["z"] = ground["x"], ground["y"], ground["z"]
    points["rgb"] = ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).view(np.float32)
    points["label"] = label
    return points
