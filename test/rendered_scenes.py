"""Scenes of known geometry rendered with exact depth and labels, for the depth tests.

A camera (Intrinsics, CameraPose) looks at ground that is flat up to ``slope_from`` m ahead and
rises by ``slope`` (10%: 0.1 m per m) beyond it, and at axis-aligned boxes in the base frame.
Every pixel's ray is intersected with them (no distortion); the nearest hit gives its depth
(metres along the optical axis, as a registered depth image holds it) and its class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lednet_ros.core.data.classes import CAMVID
from lednet_ros.core.ground.camera_geometry import CameraPose, Intrinsics

ROAD, SKY = CAMVID.names.index("road"), CAMVID.names.index("sky")


@dataclass(frozen=True)
class Box:
    """x, y, z extents (metres, base frame) and the class it is labelled with."""

    x: tuple[float, float]
    y: tuple[float, float]
    z: tuple[float, float]
    label: int = CAMVID.names.index("car")

    def footprint_contains(self, x, y, margin: float = 0.0):
        return ((x >= self.x[0] - margin) & (x <= self.x[1] + margin)
                & (y >= self.y[0] - margin) & (y <= self.y[1] + margin))


@dataclass(frozen=True)
class Scene:
    boxes: tuple[Box, ...] = ()
    slope: float = 0.0
    slope_from: float = 0.0
    ground_label: int = ROAD
    camera: Intrinsics = field(default_factory=lambda: Intrinsics(480, 360, 300.0, 300.0,
                                                                  239.5, 179.5))
    pose: CameraPose = field(default_factory=lambda: CameraPose(height=1.5, pitch=0.2))

    def ground_height(self, x):
        return np.where(x > self.slope_from, self.slope * (x - self.slope_from), 0.0)

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (h x w float32 depth in metres, NaN for sky; h x w uint8 CamVid labels)."""
        height, width = self.camera.height, self.camera.width
        rays = self.camera.pixel_rays() @ self.pose.rotation().T  # optical z = 1: t is depth
        origin = self.pose.translation()
        depth = np.full(len(rays), np.inf)
        labels = np.full(len(rays), SKY, np.uint8)
        with np.errstate(divide="ignore", invalid="ignore"):
            flat = -origin[2] / rays[:, 2]
            flat_x = origin[0] + flat * rays[:, 0]
            on_flat = (flat > 0) & ((flat_x <= self.slope_from) | (self.slope == 0))
            sloped = (self.slope * (origin[0] - self.slope_from) - origin[2]) / (
                rays[:, 2] - self.slope * rays[:, 0])
            on_slope = (sloped > 0) & (origin[0] + sloped * rays[:, 0] > self.slope_from) \
                & (self.slope > 0)
        for t, hit in ((flat, on_flat), (sloped, on_slope)):
            nearer = hit & (t < depth)
            depth[nearer], labels[nearer] = t[nearer], self.ground_label
        for box in self.boxes:
            t = _box_hits(origin, rays, box)
            nearer = t < depth
            depth[nearer], labels[nearer] = t[nearer], box.label
        depth[~np.isfinite(depth)] = np.nan
        return (depth.reshape(height, width).astype(np.float32),
                labels.reshape(height, width))


def _box_hits(origin, rays, box: Box) -> np.ndarray:
    """Ray parameter of each ray's entry into ``box`` (slab method), inf where it misses."""
    near = np.zeros(len(rays))
    far = np.full(len(rays), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, (low, high) in enumerate((box.x, box.y, box.z)):
            a = (low - origin[axis]) / rays[:, axis]
            b = (high - origin[axis]) / rays[:, axis]
            near = np.maximum(near, np.minimum(a, b))
            far = np.minimum(far, np.maximum(a, b))
    return np.where((near <= far) & (far > 0), near, np.inf)
