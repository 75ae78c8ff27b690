"""Conversions between ROS messages and the core's numpy arrays (no node), and stamp ages.

Messages are read by the core (core.runtime.images: rgb_from_message, rgb_from_compressed),
which only needs their fields; building messages copies the given header.
"""

from __future__ import annotations

import math
import re

import numpy as np
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import ColorRGBA, Header

from lednet_ros.core.inference.checkpoint import WeightsMetadata
from lednet_ros.core.runtime.health import HealthReport
from lednet_ros.core.runtime.occupancy import Occupancy
from lednet_ros.msg import ClassInfo, ClassOccupancy, PerceptionHealth

# numpy layout of the encodings this module writes
_WRITE_ENCODINGS = {"mono8": (1, np.uint8), "rgb8": (3, np.uint8), "bgr8": (3, np.uint8)}


def image_message(array: np.ndarray, encoding: str, header: Header) -> Image:
    """Return a sensor_msgs/Image of ``array``, rows unpadded.

    ``array`` is H x W for mono8, H x W x 3 for rgb8/bgr8.
    """
    if encoding not in _WRITE_ENCODINGS:
        raise ValueError(
            f"cannot write encoding {encoding!r} (supported: {', '.join(_WRITE_ENCODINGS)})")
    channels, dtype = _WRITE_ENCODINGS[encoding]
    shape = array.shape if array.ndim == 3 else (*array.shape, 1)
    if array.dtype != dtype or len(shape) != 3 or shape[2] != channels:
        raise ValueError(
            f"{encoding} needs an H x W x {channels} {np.dtype(dtype)} array, "
            f"got {array.shape} {array.dtype}"
        )
    msg = Image(header=header, height=shape[0], width=shape[1], encoding=encoding,
                is_bigendian=0, step=shape[1] * channels)
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def occupancy_message(
    occupancy: Occupancy, class_names, label_size: tuple[int, int], header: Header
) -> ClassOccupancy:
    """Return a ClassOccupancy for a label image of ``label_size`` = (width, height).

    Cell arrays are row-major: index (row * grid_cols + col) * num_classes + class.
    """
    rows, cols, num_classes = occupancy.cell_counts.shape
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} counted classes")
    return ClassOccupancy(
        header=header,
        width=int(label_size[0]),
        height=int(label_size[1]),
        class_names=list(class_names),
        pixel_counts=occupancy.counts.astype(np.uint32).tolist(),
        fractions=occupancy.fractions.astype(np.float32).tolist(),
        grid_rows=rows,
        grid_cols=cols,
        cell_pixel_counts=occupancy.cell_counts.astype(np.uint32).ravel().tolist(),
        cell_fractions=occupancy.cell_fractions.astype(np.float32).ravel().tolist(),
    )


def class_info_message(
    metadata: WeightsMetadata, weights: str, input_size: tuple[int, int], header: Header
) -> ClassInfo:
    """Return a ClassInfo from the weights' metadata.

    mean_iou is NaN where the metadata has none.
    """
    miou = metadata.reported_mean_iou
    return ClassInfo(
        header=header,
        class_names=list(metadata.class_names),
        colors=[ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=1.0)
                for r, g, b in metadata.class_colors],
        dataset=metadata.dataset,
        weights=str(weights),
        mean_iou=math.nan if miou is None else miou,
        input_width=int(input_size[0]),
        input_height=int(input_size[1]),
    )


def scaled_camera_info(
    info: CameraInfo, source_size: tuple[int, int], target_size: tuple[int, int], header: Header
) -> CameraInfo:
    """``info`` for images resized from ``source_size`` to ``target_size`` (both (w, h)).

    The intrinsics K and P and the region of interest are scaled as image_proc's resize does;
    distortion, rectification and binning are kept; width and height become the target's.
    """
    sx = target_size[0] / source_size[0]
    sy = target_size[1] / source_size[1]
    k = list(info.k)
    k[0], k[2], k[4], k[5] = k[0] * sx, k[2] * sx, k[4] * sy, k[5] * sy
    p = list(info.p)
    p[0], p[2], p[3] = p[0] * sx, p[2] * sx, p[3] * sx
    p[5], p[6], p[7] = p[5] * sy, p[6] * sy, p[7] * sy
    scaled = CameraInfo(
        header=header,
        width=int(target_size[0]),
        height=int(target_size[1]),
        distortion_model=info.distortion_model,
        d=list(info.d),
        k=k,
        r=list(info.r),
        p=p,
        binning_x=info.binning_x,
        binning_y=info.binning_y,
    )
    roi = info.roi
    scaled.roi.x_offset = round(roi.x_offset * sx)
    scaled.roi.y_offset = round(roi.y_offset * sy)
    scaled.roi.width = round(roi.width * sx)
    scaled.roi.height = round(roi.height * sy)
    scaled.roi.do_rectify = roi.do_rectify
    return scaled


def class_topic_names(class_names) -> list[str]:
    """One valid, unique ROS topic token per class: 'traffic light' -> 'traffic_light'.

    Characters outside [a-zA-Z0-9_] become '_', repeated '_' collapse, a leading digit gets a 'c'
    prefix; an empty result becomes 'class_<index>', a repeated one gets '_<index>' appended.
    """
    names = []
    for index, name in enumerate(class_names):
        token = re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9_]", "_", name)).strip("_")
        if not token:
            token = f"class_{index}"
        if token[0].isdigit():
            token = "c" + token
        if token in names:
            token = f"{token}_{index}"
        names.append(token)
    return names


def stamp_age(header: Header, clock) -> float | None:
    """Seconds from the header's stamp to now on ``clock``; None when unstamped."""
    if header.stamp.sec == 0 and header.stamp.nanosec == 0:
        return None
    now = clock.now()
    return (now - Time.from_msg(header.stamp, clock_type=now.clock_type)).nanoseconds / 1e9


def health_message(report: HealthReport, class_names, free_withheld: bool,
                   header: Header) -> PerceptionHealth:
    """lednet_ros/PerceptionHealth of one frame's HealthReport (core.runtime.health)."""
    return PerceptionHealth(
        header=header, level=report.level, reasons=list(report.reasons),
        free_withheld=free_withheld, figure_names=list(report.figures),
        figure_values=[float(v) for v in report.figures.values()],
        class_names=list(class_names), class_shares=list(report.class_shares))
