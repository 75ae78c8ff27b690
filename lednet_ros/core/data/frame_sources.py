"""Frames from a video file or an image folder, and a pinhole camera model for them. No ROS import.

Shared by the camera publisher node, the bag writer and the offline tools.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


class FrameReadError(RuntimeError):
    """One frame of the source could not be read; the message names it."""


class FrameSource:
    """RGB uint8 frames from a video file or the sorted images of a folder, optionally looping."""

    def __init__(self, source: Path, loop: bool):
        self.source, self.loop = Path(source), loop
        self.files, self.index, self.capture = [], 0, None
        if self.source.is_dir():
            self.files = sorted(p for p in self.source.iterdir()
                                if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise ValueError(f"source {self.source}: a folder without images "
                                 f"({' '.join(IMAGE_SUFFIXES)})")
        elif self.source.is_file():
            self.capture = cv2.VideoCapture(str(self.source))
            if not self.capture.isOpened():
                raise ValueError(f"source {self.source}: not a video OpenCV can read")
        else:
            raise ValueError(f"source {str(self.source)!r}: no such file or folder")

    def next(self) -> np.ndarray | None:
        """Return the next frame (H x W x 3 RGB), or None at the end when not looping.

        Raises:
            FrameReadError: an image of the folder cannot be decoded (the next call goes on).
        """
        if self.capture is not None:
            ok, bgr = self.capture.read()
            if not ok and self.loop:
                self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self.capture.read()
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None
        if self.index >= len(self.files):
            if not self.loop:
                return None
            self.index = 0
        path = self.files[self.index]
        self.index += 1
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FrameReadError(f"cannot decode image {path}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def pinhole_intrinsics(width: int, height: int) -> dict:
    """Return an uncalibrated pinhole model as sensor_msgs/CameraInfo fields d, k, r, p.

    The focal length is the width in pixels; the principal point is centred.
    """
    f, cx, cy = float(width), width / 2.0, height / 2.0
    return {"d": [0.0] * 5,
            "k": [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0],
            "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            "p": [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]}
