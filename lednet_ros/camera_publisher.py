"""A camera of our own: a video file or an image folder published as `image` + `camera_info`.

    ros2 run lednet_ros camera_publisher --ros-args -p source:=street.mp4 -p fps:=10.0
"""

from __future__ import annotations

from pathlib import Path

import cv2
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from .ros_messages import image_message

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm"}


class FrameSource:
    """Frames (RGB uint8) from a video file or the sorted images of a folder."""

    def __init__(self, source: Path, loop: bool):
        self.source, self.loop = source, loop
        if source.is_dir():
            self.files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise ValueError(f"source {source}: no images ({', '.join(IMAGE_SUFFIXES)})")
            self.index = 0
        elif source.is_file():
            self.capture = cv2.VideoCapture(str(source))
            if not self.capture.isOpened():
                raise ValueError(f"source {source}: not a readable video")
        else:
            raise ValueError(f"source {source}: no such file or folder")

    def next(self):
        """The next RGB frame, or None at the end (when not looping)."""
        if self.source.is_dir():
            if self.index >= len(self.files):
                if not self.loop:
                    return None
                self.index = 0
            bgr = cv2.imread(str(self.files[self.index]), cv2.IMREAD_COLOR)
            self.index += 1
        else:
            ok, bgr = self.capture.read()
            if not ok and self.loop:
                self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self.capture.read()
            if not ok:
                return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def pinhole_camera_info(header: Header, width: int, height: int) -> CameraInfo:
    """A plausible uncalibrated pinhole model (focal length = width, centred)."""
    info = CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob")
    f = float(width)
    info.d = [0.0] * 5
    info.k = [f, 0.0, width / 2, 0.0, f, height / 2, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [f, 0.0, width / 2, 0.0, 0.0, f, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


class CameraPublisher(Node):
    """Publishes frames at `fps` with stamps from the node clock; stops at the end unless `loop`."""

    def __init__(self, **kwargs):
        super().__init__("camera_publisher", **kwargs)
        describe = ParameterDescriptor
        self.declare_parameter("source", "", describe(description="video file or image folder"))
        self.declare_parameter("fps", 10.0, describe(description="frames per second"))
        self.declare_parameter("frame_id", "camera", describe(description="header frame_id"))
        self.declare_parameter("loop", False, describe(description="restart at the end"))
        self.declare_parameter("max_frames", 0, describe(description="stop after N (0: all)"))
        self.declare_parameter("encoding", "rgb8", describe(description="rgb8 or bgr8"))
        self.declare_parameter("wait_for_subscribers", False, describe(
            description="hold the first frame until something subscribes to image"))
        source = Path(self.get_parameter("source").value)
        fps = self.get_parameter("fps").value
        self.encoding = self.get_parameter("encoding").value
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if self.encoding not in ("rgb8", "bgr8"):
            raise ValueError(f"encoding must be rgb8 or bgr8, got {self.encoding!r}")
        self.frames = FrameSource(source, self.get_parameter("loop").value)
        self.max_frames = self.get_parameter("max_frames").value
        self.frame_id = self.get_parameter("frame_id").value
        self.image_pub = self.create_publisher(Image, "image", 10)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", 10)
        self.published = 0
        self.done = False
        self.wait_for_subscribers = self.get_parameter("wait_for_subscribers").value
        self.timer = self.create_timer(1.0 / fps, self._publish_next)

    def _publish_next(self) -> None:
        if self.done or (self.wait_for_subscribers and not self.image_pub.get_subscription_count()):
            return
        rgb = None if self.max_frames and self.published >= self.max_frames else self.frames.next()
        if rgb is None:
            self.done = True
            self.get_logger().info(f"source finished after {self.published} frames")
            return
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        image = rgb if self.encoding == "rgb8" else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        self.image_pub.publish(image_message(image, self.encoding, header))
        self.info_pub.publish(pinhole_camera_info(header, rgb.shape[1], rgb.shape[0]))
        self.published += 1


def main(args=None) -> int:
    try:
        with rclpy.init(args=args):
            try:
                node = CameraPublisher()
            except ValueError as exc:
                rclpy.logging.get_logger("camera_publisher").fatal(str(exc))
                return 1
            while rclpy.ok() and not node.done:
                rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
