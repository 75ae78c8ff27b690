"""Depth images registered to the colour frame: units, pairing by stamp, 3-D points; no ROS.

A depth camera (RealSense, OAK-D, ZED, Orbbec) publishes ``sensor_msgs/Image`` in 16UC1
(millimetres) or 32FC1 (metres), REP 118: 0, NaN and infinities are no measurement. Registered to
the colour image it shares its frame_id, and its size scales to the colour image's (same aspect
ratio). Here:

    depth = depth_from_message(msg)                       # H x W float32 metres, NaN invalid
    pairer = DepthPairer(max_skew=0.05); pairer.add(stamp_ns, sample)
    sample, skew = pairer.match(frame_stamp_ns)           # the nearest within max_skew
    metres = registered_depth(depth, depth_frame, image_frame, label_shape)  # at the labels' size
    points = DepthProjector().points(metres, intrinsics, pose)  # H x W x 3 in the base frame

GroundMapper.map takes those points (core.ground.mapping): each pixel with depth is mapped at its
measured place, the others by the flat-ground model (``ground.source``).
"""

from __future__ import annotations

import math
from collections import deque

import cv2
import numpy as np

from lednet_ros.core.ground.camera_geometry import CameraPose, Intrinsics
from lednet_ros.core.ground.class_groups import NO_GROUP
from lednet_ros.core.runtime.images import DEFAULT_MAX_PIXELS, image_from_buffer

DEPTH_LAYOUTS = {"16UC1": (1, np.uint16), "32FC1": (1, np.float32)}  # millimetres, metres
SOURCES = ("auto", "depth", "flat")  # what ground outputs are made from (ground.source)
POINTS_FRAMES = ("depth", "base")  # the frame of ~/semantic_points
SEMANTIC_DTYPE = np.dtype({"names": ["x", "y", "z", "label", "confidence", "rgb"],
                           "formats": [np.float32, np.float32, np.float32, np.uint8, np.float32,
                                       np.float32],
                           "offsets": [0, 4, 8, 12, 16, 20], "itemsize": 24})
ASPECT_TOLERANCE = 0.01  # a registered depth image's aspect ratio, relative to the labels'


class DepthError(ValueError):
    """A depth image that cannot be used with the colour frame; the message names the values."""


def depth_metres(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """Return H x W float32 metres of 16UC1 millimetres or 32FC1 metres; NaN where invalid."""
    if encoding == "16UC1":
        metres = pixels.astype(np.float32) * np.float32(0.001)
        metres[pixels == 0] = np.nan
        return metres
    if encoding == "32FC1":
        metres = np.array(pixels, dtype=np.float32)
        metres[~np.isfinite(metres) | (metres <= 0)] = np.nan
        return metres
    raise DepthError(f"depth encoding {encoding!r}; expected 16UC1 (mm) or 32FC1 (m)")


def depth_from_message(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """H x W float32 metres (NaN: no measurement) of a depth sensor_msgs/Image.

    Raises:
        ImageFormatError: an encoding other than 16UC1/32FC1, or a bad size, step or length.
    """
    pixels = image_from_buffer(msg.data, msg.height, msg.width, msg.step, msg.encoding,
                               bool(msg.is_bigendian), max_pixels, layouts=DEPTH_LAYOUTS)
    return depth_metres(pixels[..., 0], msg.encoding)


def registered_depth(depth: np.ndarray, depth_frame: str, image_frame: str,
                     label_shape: tuple[int, int]) -> np.ndarray:
    """Return ``depth`` at the labels' size (nearest neighbour), once it is known registered.

    Raises:
        DepthError: another frame_id than the image's, or a size whose aspect ratio differs from
            the labels' (an unregistered depth image), with the values.
    """
    if depth_frame != image_frame:
        raise DepthError(f"depth frame_id {depth_frame!r} is not the image's {image_frame!r}: "
                         "expected depth registered to the colour image (e.g. RealSense "
                         "align_depth, OAK-D stereo depth aligned to RGB)")
    height, width = label_shape
    if abs(depth.shape[1] * height / (depth.shape[0] * width) - 1) > ASPECT_TOLERANCE:
        raise DepthError(f"depth of {depth.shape[1]}x{depth.shape[0]} does not scale to the "
                         f"{width}x{height} labels (another aspect ratio): expected depth "
                         "registered to the colour image")
    if depth.shape == (height, width):
        return depth
    return cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST)


class DepthPairer:
    """Pairs each colour frame with the depth image nearest its stamp, within ``max_skew`` s.

    Keeps the last ``keep`` depth images (a depth camera runs at the colour camera's rate or
    faster, and the newest colour frame may be older than the newest depth image).
    """

    def __init__(self, max_skew: float = 0.05, keep: int = 8):
        if not (math.isfinite(max_skew) and max_skew >= 0):
            raise ValueError(f"depth.max_skew is {max_skew}; expected seconds >= 0")
        self.max_skew_ns = round(max_skew * 1e9)
        self._samples = deque(maxlen=keep)  # (stamp_ns, sample)

    def add(self, stamp_ns: int, sample) -> None:
        self._samples.append((stamp_ns, sample))

    def match(self, stamp_ns: int):
        """Return (sample, skew in s) of the nearest depth within max_skew, or (None, why)."""
        if not self._samples:
            return None, "no depth image received yet"
        stamp, sample = min(self._samples, key=lambda s: abs(s[0] - stamp_ns))
        skew = abs(stamp - stamp_ns)
        if skew > self.max_skew_ns:
            return None, (f"no depth within {self.max_skew_ns / 1e9:g} s of the frame (nearest "
                          f"{skew / 1e9:.3f} s away)")
        return sample, skew / 1e9


class DepthProjector:
    """3-D points of depth pixels, caching the pixel rays of the last intrinsics and pose."""

    def __init__(self):
        self._rays = (None, None)  # ((intrinsics, pose), (h, w, 3) float32 rays, optical z = 1)

    def points(self, metres: np.ndarray, intrinsics: Intrinsics,
               pose: CameraPose | None = None) -> np.ndarray:
        """H x W x 3 float32 points of ``metres`` (NaN where invalid), the rays of ``intrinsics``.

        In the optical frame, or in the base frame through ``pose``. ``intrinsics`` are scaled
        to the depth image's size first.
        """
        height, width = metres.shape
        camera = intrinsics.scaled(width, height)
        key, rays = self._rays
        if key != (camera, pose):
            rays = camera.pixel_rays().astype(np.float32).reshape(height, width, 3)
            if pose is not None:  # rotated once: a point is then ray x depth + the centre
                rays = to_base(rays, pose) - pose.translation().astype(np.float32)
            self._rays = ((camera, pose), rays)
        points = rays * metres[..., None]
        if pose is not None:
            points += pose.translation().astype(np.float32)
        return points


def to_base(points: np.ndarray, pose: CameraPose) -> np.ndarray:
    """Return ... x 3 optical-frame ``points`` in the base frame, through the camera's ``pose``."""
    return points @ pose.rotation().astype(np.float32).T + pose.translation().astype(np.float32)


class DepthPixels:
    """The pixels of one frame mapped at their measured points, with their cells and groups."""

    def __init__(self, measured, kept, cell, group):
        self.measured = measured  # (h, w) bool: a finite depth point
        self.kept = kept  # (h, w) bool: mapped from depth (on the grid, in a group, low enough)
        self.cell = cell  # (h, w) int64 flat cell index (0 where not kept)
        self.group = group  # (h, w) int16 group index

    def drop(self, mask: np.ndarray) -> None:
        """Map the ``mask`` pixels no more (their counts are made after)."""
        self.kept &= ~mask

    def counts(self, groups: int, cells: int) -> np.ndarray:
        """Return (groups * cells,) int64 pixel counts of the kept pixels."""
        kept = self.kept
        return np.bincount(self.group[kept].astype(np.int64) * cells + self.cell[kept],
                           minlength=groups * cells)


def depth_pixels(points: np.ndarray, labels: np.ndarray, group_lut: np.ndarray, origin,
                 resolution: float, grid_shape: tuple[int, int],
                 max_height: float) -> DepthPixels:
    """Place each pixel with a depth point (base frame) on a grid (GroundMapper.map uses it).

    Kept: a point on the grid of a class in a group, at most ``max_height`` m high.
    """
    if points.shape != labels.shape + (3,):
        raise ValueError(f"depth points of shape {points.shape}; expected the labels' "
                         f"{labels.shape + (3,)}")
    rows, cols = grid_shape
    measured = np.isfinite(points[..., 2])
    scale = np.float32(1 / resolution)
    col = (points[..., 0] - np.float32(origin[0])) * scale  # cells, float32
    row = (points[..., 1] - np.float32(origin[1])) * scale
    group = np.take(group_lut, labels)
    with np.errstate(invalid="ignore"):
        kept = (measured & (group != NO_GROUP) & (points[..., 2] <= max_height) & (col >= 0)
                & (col < cols) & (row >= 0) & (row < rows))
        # truncation is the floor on the grid (>= 0); elsewhere the index is not used
        cell = np.where(kept, row.astype(np.int64) * cols + col.astype(np.int64), 0)
    return DepthPixels(measured, kept, cell, group)


def semantic_points(points: np.ndarray, labels: np.ndarray, confidence: np.ndarray,
                    class_colors) -> np.ndarray:
    """H x W SEMANTIC_DTYPE: each pixel's point with its label, confidence (0-1) and colour.

    ``points`` H x W x 3 (NaN where no depth), ``confidence`` the uint8 softmax maximum x 255;
    ``rgb`` is the class colour as 0x00RRGGBB in a float32's bytes (PointCloud2's "rgb").
    """
    colors = np.asarray(class_colors, dtype=np.uint32).reshape(-1, 3)
    packed = np.zeros(256, dtype=np.uint32)
    packed[: len(colors)] = (colors[:, 0] << 16) | (colors[:, 1] << 8) | colors[:, 2]
    cloud = np.empty(labels.shape, dtype=SEMANTIC_DTYPE)
    cloud["x"], cloud["y"], cloud["z"] = points[..., 0], points[..., 1], points[..., 2]
    cloud["label"] = labels
    cloud["confidence"] = confidence * np.float32(1 / 255)
    cloud["rgb"] = packed[labels].view(np.float32)
    return cloud
