"""A pinhole camera (intrinsics, distortion) and its pose on the robot, from plain numbers.

Frames follow REP-103: the base frame has x forward, y left, z up, the ground being z = 0 (use
base_footprint); the camera optical frame has z forward, x right, y down. ``CameraPose`` holds
x, y, height and roll, pitch, yaw of the camera body (x forward, y left, z up, rotated
yaw-pitch-roll about z, y, x) in the base frame; positive pitch looks down. A TF transform
base <- camera optical frame fills it with ``CameraPose.from_quaternion`` or ``from_matrix``.

    intrinsics = Intrinsics.from_camera_info(msg.k, msg.d, msg.p, msg.distortion_model,
                                             msg.width, msg.height, rectified=False)
    pose = CameraPose(height=1.5, pitch=math.radians(10))
    rotation, translation = pose.rotation(), pose.translation()  # optical -> base
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import cv2
import numpy as np

DISTORTION_MODELS = ("plumb_bob", "rational_polynomial")
# Columns: the optical frame's x (right), y (down), z (forward) axes in the camera body frame.
OPTICAL_TO_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def _check_finite(instance) -> None:
    for field in fields(instance):
        values = getattr(instance, field.name)
        for value in values if isinstance(values, tuple) else (values,):
            if isinstance(value, numbers.Real) and not math.isfinite(value):
                raise ValueError(f"{type(instance).__name__}.{field.name} is {value}; expected "
                                 "a finite number")


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of a ``width`` x ``height`` image; OpenCV distortion ``distortion``.

    The pixel (u, v) centre sits at integer coordinates, as in OpenCV and ROS CameraInfo;
    CameraInfo binning and region of interest are not applied.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = ""
    distortion: tuple[float, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "distortion", tuple(float(v) for v in self.distortion))
        _check_finite(self)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera image size {self.width}x{self.height}; expected a positive "
                             "width and height (an uncalibrated camera_info has 0x0)")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths fx={self.fx}, fy={self.fy}; expected both > 0")
        if any(self.distortion) and self.distortion_model not in DISTORTION_MODELS:
            raise ValueError(f"distortion model {self.distortion_model!r} is not supported; "
                             f"expected one of {DISTORTION_MODELS} or all-zero coefficients")
        if any(self.distortion) and len(self.distortion) not in (4, 5, 8, 12, 14):
            raise ValueError(f"{len(self.distortion)} distortion coefficients; expected 4, 5, 8, "
                             "12 or 14 (OpenCV's layout)")

    @classmethod
    def from_camera_info(cls, k: Sequence[float], d: Sequence[float], p: Sequence[float],
                         distortion_model: str, width: int, height: int, *,
                         rectified: bool = False) -> Intrinsics:
        """From sensor_msgs/CameraInfo fields: K and D, or P (3x4) for rectified images.

        The rectification rotation R is not applied: for rectified images the rays are in the
        rectified camera frame, which is the optical frame of a monocular camera.
        """
        if rectified:
            p = [float(v) for v in p]
            return cls(int(width), int(height), p[0], p[5], p[2], p[6])
        k = [float(v) for v in k]
        return cls(int(width), int(height), k[0], k[4], k[2], k[5], str(distortion_model),
                   tuple(float(v) for v in d))

    def scaled(self, width: int, height: int) -> Intrinsics:
        """Return the intrinsics of the image resized (cv2.resize) to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        return replace(self, width=int(width), height=int(height), fx=self.fx * sx,
                       fy=self.fy * sy, cx=(self.cx + 0.5) * sx - 0.5,
                       cy=(self.cy + 0.5) * sy - 0.5)

    def matrix(self) -> np.ndarray:
        """Return the 3 x 3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def pixel_rays(self) -> np.ndarray:
        """(height * width, 3) ray directions (z = 1) in the optical frame, row-major pixels."""
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        if any(self.distortion):
            pixels = np.stack([u.ravel(), v.ravel()], axis=1)[:, None, :]
            normal = _undistort(pixels, self.matrix(), np.array(self.distortion))
        else:
            normal = np.stack([(u.ravel() - self.cx) / self.fx,
                               (v.ravel() - self.cy) / self.fy], axis=1)
        return np.concatenate([normal, np.ones((len(normal), 1))], axis=1)


@dataclass(frozen=True, kw_only=True)
class CameraPose:
    """The camera on the robot: position (metres) and roll, pitch, yaw (radians) in the base frame.

    ``height`` is above the ground (z = 0 of the base frame); positive ``pitch`` looks down,
    positive ``yaw`` looks left.
    """

    height: float
    x: float = 0.0
    y: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0

    def __post_init__(self):
        _check_finite(self)
        if self.height <= 0:
            raise ValueError(f"camera height {self.height} m; expected > 0 (above the ground)")

    def rotation(self) -> np.ndarray:
        """3 x 3 rotation taking optical-frame vectors to the base frame."""
        return _rpy_matrix(self.roll, self.pitch, self.yaw) @ OPTICAL_TO_BODY

    def translation(self) -> np.ndarray:
        """Return the optical centre in the base frame: (x, y, height)."""
        return np.array([self.x, self.y, self.height])

    def matrix(self) -> np.ndarray:
        """4 x 4 transform base <- camera optical frame."""
        matrix = np.eye(4)
        matrix[:3, :3], matrix[:3, 3] = self.rotation(), self.translation()
        return matrix

    @classmethod
    def from_matrix(cls, matrix) -> CameraPose:
        """From a 4 x 4 transform base <- camera optical frame (what TF gives)."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape != (4, 4):
            raise ValueError(f"transform of shape {matrix.shape}; expected 4 x 4")
        return cls.from_rotation(matrix[:3, :3], matrix[:3, 3])

    @classmethod
    def from_quaternion(cls, quaternion_xyzw, translation) -> CameraPose:
        """From a TF transform base <- camera optical frame: rotation (x, y, z, w), translation."""
        q = np.asarray(quaternion_xyzw, dtype=np.float64)
        norm = np.linalg.norm(q) if q.shape == (4,) else 0.0
        if not 0.5 < norm < 2.0:
            raise ValueError(f"quaternion {q.tolist()}; expected 4 numbers (x, y, z, w) of unit "
                             "norm")
        x, y, z, w = q / norm
        rotation = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ])
        return cls.from_rotation(rotation, translation)

    @classmethod
    def from_rotation(cls, rotation, translation) -> CameraPose:
        """From a 3 x 3 rotation (optical -> base) and the optical centre in the base frame."""
        rotation = np.asarray(rotation, dtype=np.float64)
        translation = np.asarray(translation, dtype=np.float64).ravel()
        if rotation.shape != (3, 3) or translation.shape != (3,):
            raise ValueError(f"rotation of shape {rotation.shape} and translation of shape "
                             f"{translation.shape}; expected 3 x 3 and 3")
        if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6) or \
                np.linalg.det(rotation) < 0:
            raise ValueError(f"{rotation.tolist()} is not a rotation matrix")
        roll, pitch, yaw = _matrix_rpy(rotation @ OPTICAL_TO_BODY.T)
        x, y, z = (float(v) for v in translation)
        return cls(x=x, y=y, height=z, roll=roll, pitch=pitch, yaw=yaw)


def _undistort(pixels: np.ndarray, matrix: np.ndarray, distortion: np.ndarray) -> np.ndarray:
    """(n, 2) normalized coordinates of (n, 1, 2) distorted pixels, iterated to 1e-10."""
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)
    if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4; OpenCV 5 folds it into undistortPoints
        return cv2.undistortPointsIter(pixels, matrix, distortion, None, None,
                                       criteria).reshape(-1, 2)
    return cv2.undistortPoints(pixels, matrix, distortion, R=None, P=None,
                               criteria=criteria).reshape(-1, 2)


def _rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    cr, sr, cp, sp = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def _matrix_rpy(matrix: np.ndarray) -> tuple[float, float, float]:
    """(roll, pitch, yaw) of Rz(yaw) @ Ry(pitch) @ Rx(roll); roll = 0 at pitch = +-90 degrees."""
    pitch = math.asin(max(-1.0, min(1.0, -matrix[2, 0])))
    if abs(matrix[2, 0]) > 1 - 1e-9:
        return 0.0, pitch, math.atan2(-matrix[0, 1], matrix[1, 1])
    return (math.atan2(matrix[2, 1], matrix[2, 2]), pitch,
            math.atan2(matrix[1, 0], matrix[0, 0]))
