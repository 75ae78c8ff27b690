r"""A camera of our own: a video file or an image folder published as `image` + `camera_info`.

    ros2 run lednet_ros camera_publisher --ros-args -p source:=street.mp4 -p fps:=10.0 \
        -r image:=/camera/image_raw -r camera_info:=/camera/camera_info

Frames go out at `fps` with stamps from the node clock (so use_sim_time works), on `image`
(sensor_msgs/Image, rgb8 or bgr8) and `camera_info` (an uncalibrated pinhole model of the published
size). When the source ends and `loop` is false the node logs it and its process exits with 0:
that is the done signal for whoever started it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
from rclpy.duration import Duration
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from lednet_ros.core.data.frame_sources import FrameReadError, FrameSource, pinhole_intrinsics
from lednet_ros.ros.messages import image_message
from lednet_ros.ros.parameters import RELIABILITY, Spec, declare, qos
from lednet_ros.ros.runner import refuse_start, run_node

MAX_SIDE = 16384
ACK_TIMEOUT_S = 5.0  # at the end, how long reliable subscribers get to acknowledge
PARAMETERS = {
    "source": Spec("", "Video file or folder of images (sorted by name).", read_only=True),
    "fps": Spec(10.0, "Frames per second.", read_only=True, floats=(0.01, 1000.0)),
    "frame_id": Spec("camera", "frame_id of every header.", read_only=True),
    "loop": Spec(False, "Start again at the end instead of finishing.", read_only=True),
    "max_frames": Spec(0, "Finish after this many frames (0: no limit).", read_only=True,
                       integers=(0, 2**31 - 1)),
    "encoding": Spec("rgb8", "Image encoding.", read_only=True, choices=("rgb8", "bgr8")),
    "width": Spec(0, "Resize frames to this width (0: keep; with height 0, keep the aspect "
                  "ratio).", read_only=True, integers=(0, MAX_SIDE)),
    "height": Spec(0, "Resize frames to this height (0: keep; with width 0, keep the aspect "
                   "ratio).", read_only=True, integers=(0, MAX_SIDE)),
    "qos_reliability": Spec("reliable", "Reliability of image and camera_info: reliable "
                            "(rclpy's default, as most drivers) or best_effort (sensor data).",
                            read_only=True, choices=tuple(RELIABILITY)),
    "qos_depth": Spec(10, "History depth of image and camera_info.", read_only=True,
                      integers=(1, 1000)),
    "wait_for_subscribers": Spec(0, "Hold the first frame until image has this many "
                                 "subscriptions (0: start at once).", read_only=True,
                                 integers=(0, 1000)),
}


def pinhole_camera_info(header: Header, width: int, height: int) -> CameraInfo:
    """CameraInfo of frame_sources.pinhole_intrinsics for a width x height image."""
    return CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob",
                      **pinhole_intrinsics(width, height))


def output_size(width: int, height: int, wanted: tuple[int, int]) -> tuple[int, int]:
    """Return the (width, height) to publish a width x height frame at.

    A 0 in ``wanted`` keeps the aspect ratio from the other side; (0, 0) keeps the frame's size.
    """
    want_w, want_h = wanted
    if want_w and want_h:
        return want_w, want_h
    if want_w:
        return want_w, max(1, round(height * want_w / width))
    if want_h:
        return max(1, round(width * want_h / height)), want_h
    return width, height


class CameraPublisher(Node):
    """Publishes a FrameSource at ``fps``; ``done`` turns true when it ends (not looping)."""

    def __init__(self, **kwargs):
        super().__init__("camera_publisher", **kwargs)
        try:
            values = declare(self, PARAMETERS)
            self.frames = FrameSource(Path(values["source"]), values["loop"])
        except (ParameterException, FrameReadError, ValueError) as exc:
            refuse_start(self, exc)
        self.encoding = values["encoding"]
        self.size = (values["width"], values["height"])
        self.max_frames = values["max_frames"]
        self.frame_id = values["frame_id"]
        self.wait_for_subscribers = values["wait_for_subscribers"]
        output_qos = qos(values["qos_reliability"], values["qos_depth"])
        self.image_pub = self.create_publisher(Image, "image", output_qos)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", output_qos)
        self.published = 0
        self.frames_skipped = 0
        self.done = False
        self.timer = self.create_timer(1.0 / values["fps"], self._publish_next)
        self.get_logger().info(f"publishing {self.frames.source} at {values['fps']} fps")

    def _publish_next(self) -> None:
        if self.done:
            return
        if self.published == 0 and self.frames_skipped == 0 and (
                self.image_pub.get_subscription_count() < self.wait_for_subscribers):
            return
        try:
            rgb = None if 0 < self.max_frames <= self.published else self.frames.next()
        except FrameReadError as exc:
            self.frames_skipped += 1
            self.get_logger().warning(f"{exc}; skipped")
            return
        if rgb is None:
            self._finish()
            return
        width, height = output_size(rgb.shape[1], rgb.shape[0], self.size)
        if (width, height) != (rgb.shape[1], rgb.shape[0]):
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        image = rgb if self.encoding == "rgb8" else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        self.image_pub.publish(image_message(image, self.encoding, header))
        self.info_pub.publish(pinhole_camera_info(header, width, height))
        self.published += 1

    def _finish(self) -> None:
        self.done = True
        self.timer.cancel()
        # Reliable subscribers get the last frames before this process exits (a no-op for
        # best-effort ones).
        for publisher in (self.image_pub, self.info_pub):
            publisher.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S))
        skipped = f", {self.frames_skipped} unreadable skipped" if self.frames_skipped else ""
        self.get_logger().info(f"source finished: {self.published} frames published{skipped}")


def main(args=None) -> int:
    return run_node(CameraPublisher, PARAMETERS, __doc__, args, "camera_publisher")


if __name__ == "__main__":
    sys.exit(main())
