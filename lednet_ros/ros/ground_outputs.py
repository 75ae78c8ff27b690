"""The segmentation node's ground outputs: grids, costmap, point clouds for Nav2, label info.

Wiring only (the geometry is core.ground.mapping): parameters `groups.*`, `ground.*`, `costmap.*`
declared on the node, publishers, and :meth:`GroundOutputs.publish` called by the worker with
each frame's labels and the newest camera_info. Nothing is computed while nobody subscribes.
"""

from __future__ import annotations

import math

from nav_msgs.msg import OccupancyGrid
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, PointCloud2
from std_msgs.msg import Header

from lednet_ros.core.ground.camera_geometry import CameraPose, Intrinsics
from lednet_ros.core.inference.checkpoint import WeightsMetadata
from lednet_ros.core.ground.class_groups import DEFAULT_GROUPS, ClassGroups
from lednet_ros.core.ground.mapping import (
    DEFAULT_FOOTPRINT_CONFIDENCE, DEFAULT_FOOTPRINT_RUN, GridSpec, GroundMapper, build_lookup,
    footprint_run, ground_points,
)
from lednet_ros.core.ground.clouds import aligned_points, free_points, obstacle_points
from lednet_ros.ros.ground_messages import occupancy_grid_message, point_cloud_message
from lednet_ros.ros.parameters import LATCHED, Spec, declare

ANGLE = (-math.pi, math.pi)
GROUND_PARAMETERS = {
    "ground.base_frame": Spec("base_link", "Frame of the grids and points (the robot's base, "
                              "REP-103: x forward, y left, z up).", read_only=True),
    "ground.camera_x": Spec(0.0, "Camera position ahead of base_frame's origin (m).",
                            floats=(-100.0, 100.0)),
    "ground.camera_y": Spec(0.0, "Camera position left of base_frame's origin (m).",
                            floats=(-100.0, 100.0)),
    "ground.camera_height": Spec(1.0, "Camera height above the ground (m, > 0).",
                                 floats=(0.0, 100.0)),
    "ground.camera_roll": Spec(0.0, "Camera roll (rad).", floats=ANGLE),
    "ground.camera_pitch": Spec(0.1, "Camera pitch (rad, positive = looking down).",
                                floats=ANGLE),
    "ground.camera_yaw": Spec(0.0, "Camera yaw (rad, positive = turned left).", floats=ANGLE),
    "ground.use_tf": Spec(False, "Take the camera pose from TF (base_frame <- the image's "
                          "frame_id) instead of the camera_* parameters; needs tf2_ros.",
                          read_only=True),
    "ground.rectified": Spec(False, "The image is rectified (image_rect): use camera_info's P "
                             "and no distortion; else K and D.", read_only=True),
    "ground.resolution": Spec(0.1, "Grid cell size (m).", floats=(0.01, 10.0)),
    "ground.range": Spec(20.0, "Grid length ahead of the camera (m).", floats=(0.1, 1000.0)),
    "ground.width": Spec(10.0, "Grid width across, centred on the camera (m).",
                         floats=(0.1, 1000.0)),
    "ground.points_step": Spec(4, "Every Nth pixel (in both directions) goes into "
                               "~/ground_points and ~/free_points.", integers=(1, 64)),
    "ground.footprint_run": Spec(DEFAULT_FOOTPRINT_RUN, "Shortest vertical run of obstacle "
                                 "pixels that makes a footprint, as a fraction of the label "
                                 "image's height (0: a single pixel); shorter runs below it "
                                 "count as nothing; its bottom rows, as many, mark the obstacle.",
                                 floats=(0.0, 0.5)),
    "ground.footprint_confidence": Spec(DEFAULT_FOOTPRINT_CONFIDENCE, "Confidence (softmax "
                                        "maximum, 0..1) the most confident pixel of a "
                                        "footprint's run reaches (0: any run).",
                                        floats=(0.0, 1.0)),
    "ground.obstacle_points_height": Spec(0.3, "Height (m) of ~/obstacle_points above the "
                                          "ground: inside the marking source's "
                                          "min/max_obstacle_height.", floats=(-10.0, 10.0)),
    "ground.free_points_height": Spec(0.0, "Height (m) of ~/free_points above the ground: "
                                      "inside the clearing source's min/max_obstacle_height.",
                                      floats=(-10.0, 10.0)),
}
POSE_PARAMETERS = ("x", "y", "height", "roll", "pitch", "yaw")


def group_defaults(dataset: str) -> dict:
    """Default groups for the weights' class set ({} where there are none)."""
    return DEFAULT_GROUPS.get(dataset, {"groups": {}, "obstacle": [], "drivable": []})


class GroundOutputs:
    """Declares the ground parameters on ``node`` and publishes its ground outputs."""

    def __init__(self, node: Node, metadata: WeightsMetadata):
        self.node = node
        self.metadata = metadata
        defaults = group_defaults(metadata.dataset)
        names = self._declare_list("groups.names", list(defaults["groups"]),
                                   "Names of the class groups mapped on the ground.")
        self.groups = ClassGroups.build(
            list(metadata.class_names),
            {name: self._declare_list(f"groups.{name}", defaults["groups"].get(name, []),
                                      f"Classes of group '{name}'.") for name in names},
            obstacle=self._declare_list("groups.obstacles", defaults["obstacle"],
                                        "Groups that stand on the ground (only their ground "
                                        "contact is mapped; cells behind them stay unknown)."),
            drivable=self._declare_list("costmap.drivable", defaults["drivable"],
                                        "Groups where the costmap is free (0)."))
        self.values = declare(node, GROUND_PARAMETERS)
        self.pose(self.values), self.grid(self.values)  # refuse a bad configuration now
        self.mapper = GroundMapper(self.groups)
        self.last_camera = None  # (intrinsics, label shape) of the last mapped frame
        self.tf = None
        if self.values["ground.use_tf"]:
            from lednet_ros.ros.tf_pose import TfCameraPose  # needs tf2_ros (a ROS install)

            self.tf = TfCameraPose(node, self.values["ground.base_frame"])
        self.grid_pubs = {name: node.create_publisher(OccupancyGrid, f"~/grid/{name}", 10)
                          for name in self.groups.names}
        self.costmap_pub = node.create_publisher(OccupancyGrid, "~/costmap", 10)
        self.points_pub = node.create_publisher(PointCloud2, "~/ground_points", 10)
        self.clouds = {name: node.create_publisher(PointCloud2, f"~/{name}", 10)
                       for name in ("obstacle_points", "free_points", "aligned_points")}
        self._publish_label_info()

    def _declare_list(self, name: str, default: list, description: str) -> list[str]:
        value = list(default) if default else Parameter.Type.STRING_ARRAY
        spec = Spec(default, description, read_only=True)
        return list(self.node.declare_parameter(name, value, spec.descriptor()).value or [])

    # ---- parameters ------------------------------------------------------------------------

    def check(self, changes: dict) -> SetParametersResult:
        """Refuse a change of pose or grid that cannot work, with the reason."""
        values = {**self.values, **{k: v for k, v in changes.items() if k in GROUND_PARAMETERS}}
        try:
            pose, grid = self.pose(values), self.grid(values)
            if self.last_camera is not None:  # e.g. a pitch that puts the horizon too low
                build_lookup(self.last_camera[0], pose, self.last_camera[1], grid)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def apply(self, changes: dict) -> None:
        self.values.update({k: v for k, v in changes.items() if k in GROUND_PARAMETERS})

    @staticmethod
    def pose(values: dict) -> CameraPose:
        return CameraPose(**{name: values[f"ground.camera_{name}"] for name in POSE_PARAMETERS})

    @staticmethod
    def grid(values: dict) -> GridSpec:
        return GridSpec(resolution=values["ground.resolution"], range=values["ground.range"],
                        width=values["ground.width"])

    # ---- per frame -------------------------------------------------------------------------

    def wanted(self) -> bool:
        publishers = [*self.grid_pubs.values(), self.costmap_pub, self.points_pub,
                      *self.clouds.values()]
        return any(p.get_subscription_count() for p in publishers)

    def needs_confidence(self) -> bool:
        """Whether the next frame's ground outputs need its confidence (footprint_confidence)."""
        return self.values["ground.footprint_confidence"] > 0 and self.wanted()

    def publish(self, header: Header, labels, info: CameraInfo | None, confidence=None) -> None:
        """Map ``labels`` with the camera of ``info`` and publish what is subscribed.

        ``confidence`` (uint8, the labels' size) is needed while ground.footprint_confidence > 0.

        Raises:
            ValueError: no camera_info yet, or a pose/grid/camera that sees no ground.
        """
        if not self.wanted():
            return
        if info is None:
            raise ValueError("ground grids need the camera's camera_info; none received yet")
        values = dict(self.values)
        pose = self.tf.pose(header) if self.tf is not None else self.pose(values)
        camera = Intrinsics.from_camera_info(
            info.k, info.d, info.p, info.distortion_model, info.width or labels.shape[1],
            info.height or labels.shape[0], rectified=values["ground.rectified"])
        camera = camera.scaled(labels.shape[1], labels.shape[0])
        min_confidence = values["ground.footprint_confidence"]
        if min_confidence > 0 and confidence is None:
            raise ValueError("ground.footprint_confidence needs the frame's confidence; none "
                             "was computed")
        maps = self.mapper.map(labels, camera, pose, self.grid(values),
                               footprint_run(values["ground.footprint_run"], labels.shape[0]),
                               confidence, min_confidence)
        self.last_camera = (camera, labels.shape)
        out = Header(stamp=header.stamp, frame_id=values["ground.base_frame"])
        for name, grid in maps.group_grids().items():
            if self.grid_pubs[name].get_subscription_count():
                self.grid_pubs[name].publish(
                    occupancy_grid_message(grid, maps.resolution, maps.origin, out))
        if self.costmap_pub.get_subscription_count():
            self.costmap_pub.publish(
                occupancy_grid_message(maps.costmap(), maps.resolution, maps.origin, out))
        if self.points_pub.get_subscription_count():
            points = ground_points(maps, labels, self.metadata.class_colors,
                                   step=values["ground.points_step"])
            self.points_pub.publish(point_cloud_message(points, out))
        clouds = {
            "obstacle_points": lambda: obstacle_points(
                maps, values["ground.obstacle_points_height"]),
            "free_points": lambda: free_points(maps, values["ground.points_step"],
                                               values["ground.free_points_height"]),
            "aligned_points": lambda: aligned_points(maps)}
        for name, points in clouds.items():
            if self.clouds[name].get_subscription_count():
                self.clouds[name].publish(point_cloud_message(points(), out))

    def _publish_label_info(self) -> None:
        """vision_msgs/LabelInfo (transient local) where vision_msgs is installed."""
        try:
            from vision_msgs.msg import LabelInfo, VisionClass
        except ImportError as exc:
            self.node.get_logger().info(
                f"~/label_info not published: vision_msgs is not installed ({exc})")
            return
        self.label_info_pub = self.node.create_publisher(LabelInfo, "~/label_info", LATCHED)
        self.label_info_pub.publish(LabelInfo(
            header=Header(stamp=self.node.get_clock().now().to_msg()),
            class_map=[VisionClass(class_id=i, class_name=name)
                       for i, name in enumerate(self.metadata.class_names)]))

