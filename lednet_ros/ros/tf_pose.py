"""The camera pose from TF (ground.use_tf): base_frame <- the image's frame_id.

Needs tf2_ros, which comes with a ROS 2 install (not on PyPI). The same CameraPose as the
ground.camera_* parameters give, so the ground mapping does not know where it came from.
"""

from __future__ import annotations

from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.time import Time
from std_msgs.msg import Header

from lednet_ros.core.ground.camera_geometry import CameraPose
from lednet_ros.ros.parameters import ConfigurationError

try:
    from tf2_ros import Buffer, TransformException, TransformListener
except ImportError as error:  # a machine without a ROS install
    Buffer = None
    IMPORT_ERROR = str(error)


class TfCameraPose:
    """Looks up base_frame <- camera frame for each image (the newest transform)."""

    def __init__(self, node: Node, base_frame: str, timeout_s: float = 0.05):
        if Buffer is None:
            raise ConfigurationError(
                f"ground.use_tf needs tf2_ros, which is not installed ({IMPORT_ERROR}); set "
                "ground.use_tf:=false and the ground.camera_* parameters instead")
        self.base_frame = base_frame
        self.timeout = Duration(seconds=timeout_s)
        self.buffer = Buffer()
        self.listener = TransformListener(self.buffer, node)

    def pose(self, header: Header) -> CameraPose:
        """Return the camera's pose in base_frame.

        Raises:
            ValueError: naming the frames, when TF has no transform between them.
        """
        try:
            transform = self.buffer.lookup_transform(
                self.base_frame, header.frame_id, Time(), timeout=self.timeout).transform
        except TransformException as exc:
            raise ValueError(f"no transform {self.base_frame} <- {header.frame_id!r} in TF: "
                             f"{exc}") from None
        q, t = transform.rotation, transform.translation
        return CameraPose.from_quaternion((q.x, q.y, q.z, q.w), (t.x, t.y, t.z))
