"""The segmentation node's depth input: ``depth`` and ``depth_camera_info``, paired by stamp.

Wiring only (units, pairing and registration are core.ground.depth): each depth message is
kept with its stamp as it arrives; :meth:`DepthInput.for_frame` reads the one nearest a colour
frame within ``depth.max_skew`` (only that one is decoded), registered to the labels' size, or
says why there is none. A depth image that cannot be used is refused loudly, once per kind of
problem, with the values (and counted in the node's statistics).
"""

from __future__ import annotations

from sensor_msgs.msg import CameraInfo, Image

from lednet_ros.core.ground.camera_geometry import Intrinsics
from lednet_ros.core.ground.depth import (
    DepthError, DepthPairer, depth_from_message, registered_depth,
)
from lednet_ros.core.runtime.images import ImageFormatError


def stamp_ns(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


class DepthInput:
    """Subscribes ``node`` to ``<inputs>depth`` and ``<inputs>depth_camera_info`` with ``qos``.

    Problems are noted in ``stats`` (the camera's PipelineStats).
    """

    def __init__(self, node, qos, max_skew: float, stats, rectified: bool = False,
                 inputs: str = ""):
        self.node, self.stats, self.rectified = node, stats, rectified
        self.pairer = DepthPairer(max_skew)
        self.info = None  # the newest depth_camera_info
        self._refused = set()  # kinds of problem already logged
        node.create_subscription(Image, f"{inputs}depth", self._on_depth, qos)
        node.create_subscription(CameraInfo, f"{inputs}depth_camera_info",
                                 lambda msg: setattr(self, "info", msg), qos)

    def _on_depth(self, msg: Image) -> None:
        self.pairer.add(stamp_ns(msg.header), msg)

    def refuse(self, kind: str, problem: str) -> None:
        """Log ``problem`` as a warning the first time a ``kind`` of problem occurs."""
        self.stats.note_error(problem)
        if kind not in self._refused:
            self._refused.add(kind)
            self.node.get_logger().warning(problem)

    def for_frame(self, header, label_shape: tuple[int, int], image_info: CameraInfo | None):
        """Return (metres at the labels' size, intrinsics, the skew) or (None, None, why not).

        The intrinsics are depth_camera_info's, else the colour camera_info's (registered depth
        shares the colour camera's).
        """
        msg, skew = self.pairer.match(stamp_ns(header))
        if msg is None:
            return None, None, skew
        info = self.info or image_info
        if info is None:
            return None, None, "no depth_camera_info or camera_info received yet"
        try:
            depth = depth_from_message(msg)
        except (ImageFormatError, DepthError) as exc:
            self.refuse("format", f"depth image not used: {exc}")
            return None, None, str(exc)
        try:
            metres = registered_depth(depth, msg.header.frame_id, header.frame_id, label_shape)
        except DepthError as exc:
            self.refuse("registration", f"depth not used: {exc}")
            return None, None, str(exc)
        width, height = msg.width, msg.height
        camera = Intrinsics.from_camera_info(info.k, info.d, info.p, info.distortion_model,
                                             info.width or width, info.height or height,
                                             rectified=self.rectified)
        return metres, camera, f"skew {skew:.3f} s"
