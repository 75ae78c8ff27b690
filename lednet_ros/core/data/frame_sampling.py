"""N frames spread evenly over videos, image folders and rosbag2 topics. No ROS import.

What adaptation to a new camera (adaptation.py) learns from: a few frames from each recording,
spread over its whole length. Reading goes through FrameSource (videos, folders) and bags.py
(sensor_msgs/Image and CompressedImage); only the frames taken are decoded into memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from lednet_ros.core.data.bags import IMAGE_TOPIC, BagError, BagTopics, count_images, read_frames
from lednet_ros.core.data.datasets import DatasetError, read_rgb
from lednet_ros.core.data.frame_sources import FrameReadError, FrameSource


class FrameSamplingError(ValueError):
    """A source that cannot be read, or too few frames; the message names the source."""


@dataclass(frozen=True)
class Source:
    """A video file, a folder of images, or a rosbag2 folder (read on ``topic``)."""

    path: Path
    topic: str = IMAGE_TOPIC

    @property
    def kind(self) -> str:
        """'bag', 'images' or 'video'; FrameSamplingError naming a path that is neither."""
        path = Path(self.path)
        if path.is_dir():
            bag_files = ("metadata.yaml", "*.mcap", "*.db3")
            return "bag" if any(any(path.glob(p)) for p in bag_files) else "images"
        if path.is_file():
            return "video"
        raise FrameSamplingError(f"source {str(path)!r}: no such file or folder")

    def describe(self) -> dict:
        """Return the source as recorded in the weights' metadata (path, kind, topic of a bag)."""
        kind = self.kind
        return {"path": str(self.path), "kind": kind, **({"topic": self.topic}
                                                         if kind == "bag" else {})}


def _refuse(source: Source, error: Exception) -> FrameSamplingError:
    message = str(error)
    if str(source.path) not in message:
        message = f"source {str(source.path)!r}: {message}"
    return FrameSamplingError(message)


def count_frames(source: Source) -> int:
    """Return the number of frames of a source (a video is read through once, not decoded)."""
    try:
        if source.kind == "bag":
            return count_images(source.path, BagTopics(image=source.topic))
        frames = FrameSource(source.path, loop=False)
        if source.kind == "images":
            return len(frames.files)
        count = 0
        while frames.capture.grab():
            count += 1
        frames.capture.release()
        return count
    except (BagError, ValueError) as error:
        raise _refuse(source, error) from error


def read_selected(source: Source, indices: Sequence[int]) -> Iterator[np.ndarray]:
    """Yield the source's frames at the ascending ``indices`` as H x W x 3 uint8 RGB."""
    wanted = set(indices)
    try:
        if source.kind == "bag":
            for frame in read_frames(source.path, BagTopics(image=source.topic),
                                     image_indices=wanted):
                if frame.kind == "image":
                    yield frame.array
            return
        frames = FrameSource(source.path, loop=False)
        if source.kind == "images":
            for index in indices:
                yield read_rgb(frames.files[index])
            return
        for index in range(max(indices, default=-1) + 1):
            if index not in wanted:
                frames.capture.grab()
            elif (rgb := frames.next()) is not None:
                yield rgb
        frames.capture.release()
    except (BagError, DatasetError, FrameReadError, ValueError) as error:
        raise _refuse(source, error) from error


def frames_per_source(count: int, available: Sequence[int]) -> list[int]:
    """Split ``count`` into shares as equal as the sources allow.

    A source with fewer frames than its share gives all it has; the others make up the rest.
    """
    shares = [0] * len(available)
    remaining = count
    by_size = sorted(range(len(available)), key=lambda i: available[i])
    for position, source in enumerate(by_size):
        share = -(-remaining // (len(by_size) - position))
        shares[source] = min(available[source], share)
        remaining -= shares[source]
    return shares


def spread_indices(total: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``total`` frames: the centres of equal spans."""
    return [int((j + 0.5) * total / count) for j in range(count)]


def gather_frames(sources: Sequence[Source], count: int, size: tuple[int, int] | None = None,
                  progress=None) -> tuple[list[np.ndarray], list[dict]]:
    """Read ``count`` frames spread evenly over ``sources`` (and over each source's length).

    Args:
        sources: videos, image folders, rosbag2 folders.
        count: frames wanted in all.
        size: (width, height) to resize every frame to (to hold many frames); None keeps theirs.
        progress: called with (frames read, count).

    Returns:
        The frames (H x W x 3 uint8 RGB) and, per source, its description with the frames taken.

    Raises:
        FrameSamplingError: naming a source that cannot be read, or the frames the sources hold
            when that is fewer than ``count``.
    """
    if not sources:
        raise FrameSamplingError("no source of frames given")
    if count < 1:
        raise FrameSamplingError(f"{count} frames asked for; expected at least 1")
    available = [count_frames(source) for source in sources]
    if sum(available) < count:
        held = ", ".join(f"{s.path}: {n}" for s, n in zip(sources, available))
        raise FrameSamplingError(f"{count} frames asked for but the sources hold "
                                 f"{sum(available)} ({held})")
    frames, records = [], []
    for source, total, share in zip(sources, available, frames_per_source(count, available)):
        indices = spread_indices(total, share)
        taken = 0
        for rgb in read_selected(source, indices):
            if size is not None:
                rgb = cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_AREA)
            frames.append(rgb)
            taken += 1
            if progress is not None:
                progress(len(frames), count)
        if taken != share:
            raise FrameSamplingError(f"source {str(source.path)!r}: {taken} of its {total} "
                                     f"frames could be read, {share} wanted")
        records.append({**source.describe(), "frames": share, "available": total})
    return frames, records
