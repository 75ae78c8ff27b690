"""The segmentation node's ground outputs: grids, costmap, point clouds for Nav2, label info.

Wiring only (the geometry is core.ground): publishers, the depth input (ros.depth_input), and
:meth:`GroundOutputs.publish` called by the worker with each frame's labels and the newest
camera_info; with depth paired to the frame its pixels are mapped where they were measured
(``ground.source``) and ``~/semantic_points`` carries them. The node gives the class
groups and the GroundSettings (ros/segmentation_parameters.py makes both from its parameters) and
hands over new settings after a runtime change. Nothing is computed while nobody subscribes.
"""

from __future__ import annotations

import numpy as np
from nav_msgs.msg import OccupancyGrid
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, PointCloud2
from std_msgs.msg import Header

from lednet_ros.core.ground.camera_geometry import Intrinsics
from lednet_ros.core.ground.class_groups import ClassGroups
from lednet_ros.core.ground.clouds import (
    aligned_points, free_points, ground_points, obstacle_points,
)
from lednet_ros.core.ground.depth import DepthProjector, semantic_points
from lednet_ros.core.ground.footprints import footprint_run
from lednet_ros.core.ground.mapping import GroundMapper
from lednet_ros.core.ground.settings import GroundSettings
from lednet_ros.core.inference.checkpoint import WeightsMetadata
from lednet_ros.ros.depth_input import DepthInput
from lednet_ros.ros.diagnostics import WARNING_PERIOD_S
from lednet_ros.ros.ground_messages import occupancy_grid_message, point_cloud_message
from lednet_ros.ros.parameters import LATCHED, qos



class GroundOutputs:
    """Publishes ``node``'s ground outputs for ``groups`` with ``settings``."""

    def __init__(self, node: Node, metadata: WeightsMetadata, groups: ClassGroups,
                 settings: GroundSettings, stats, inputs: str = "", outputs: str = "~/"):
        """``inputs``/``outputs``: the camera's topic prefixes ('' and '~/' for one camera)."""
        self.node = node
        self.metadata = metadata
        self.groups = groups
        self.settings = settings
        self.mapper = GroundMapper(groups)
        self.last_camera = None  # (intrinsics, label shape) of the last mapped frame
        self.tf = None
        if settings.use_tf:
            from lednet_ros.ros.tf_pose import TfCameraPose  # needs tf2_ros (a ROS install)

            self.tf = TfCameraPose(node, settings.base_frame)
        self.grid_pubs = {name: node.create_publisher(OccupancyGrid, f"{outputs}grid/{name}", 10)
                          for name in groups.names}
        self.costmap_pub = node.create_publisher(OccupancyGrid, f"{outputs}costmap", 10)
        self.points_pub = node.create_publisher(PointCloud2, f"{outputs}ground_points", 10)
        self.clouds = {name: node.create_publisher(PointCloud2, f"{outputs}{name}", 10)
                       for name in ("obstacle_points", "free_points", "aligned_points")}
        self.semantic_pub = node.create_publisher(PointCloud2, f"{outputs}semantic_points", 10)
        values = node.values
        self.depth = DepthInput(node, qos(values["qos_reliability"], values["qos_depth"]),
                                values["depth.max_skew"], stats, settings.rectified, inputs)
        self.projector = DepthProjector()
        self.last_source = "no frame mapped yet"  # what the last frame was mapped from, and why
        self._publish_label_info(outputs)

    # ---- settings --------------------------------------------------------------------------

    def check(self, settings: GroundSettings) -> None:
        """ValueError when ``settings`` cannot map the last camera's frames.

        E.g. a pitch that puts the horizon below the image. The lookup made here is the
        mapper's cached one, so the next frame reuses it (and unchanged pose and grid cost
        nothing).
        """
        if self.last_camera is not None:
            self.mapper.lookup(self.last_camera[0], settings.pose, self.last_camera[1],
                               settings.grid)

    def update(self, settings: GroundSettings) -> None:
        """Map the next frames with ``settings`` (checked by :meth:`check`)."""
        self.settings = settings

    # ---- per frame -------------------------------------------------------------------------

    def wanted(self) -> bool:
        publishers = [*self.grid_pubs.values(), self.costmap_pub, self.points_pub,
                      *self.clouds.values(), self.semantic_pub]
        return any(p.get_subscription_count() for p in publishers)

    def needs_confidence(self) -> bool:
        """Whether ground outputs with these settings need the frame's confidence."""
        return self.settings.footprint_confidence > 0 or self.settings.free_confidence > 0

    def publish(self, header: Header, labels, info: CameraInfo | None, confidence=None,
                withhold_free: bool = False, mirror_confidence=None) -> None:
        """Map ``labels`` with the camera of ``info`` and publish what is subscribed.

        ``confidence`` (uint8, the labels' size) is needed while ground.footprint_confidence or
        ground.free_confidence > 0, ``mirror_confidence`` (uint8, the labels' size: Pipeline's)
        while ground.mirror_check (without it, as for a frame segmented before the parameter
        or a subscriber came, nothing is free). ``withhold_free``: this frame marks nothing free
        (the health policy). The caller asks :meth:`wanted` first: nothing here while nobody
        subscribes.

        Raises:
            ValueError: no camera_info yet, or a pose/grid/camera that sees no ground.
        """
        if info is None:
            raise ValueError("ground grids need the camera's camera_info; none received yet")
        settings = self.settings
        pose = self.tf.pose(header) if self.tf is not None else settings.pose
        camera = Intrinsics.from_camera_info(
            info.k, info.d, info.p, info.distortion_model, info.width or labels.shape[1],
            info.height or labels.shape[0], rectified=settings.rectified)
        camera = camera.scaled(labels.shape[1], labels.shape[0])
        if self.needs_confidence() and confidence is None:
            raise ValueError("ground.footprint_confidence and ground.free_confidence need the "
                             "frame's confidence; none was computed")
        if settings.mirror_check and mirror_confidence is None:
            withhold_free = True  # segmented before the check was asked for: nothing free
        depth = self._depth(header, labels.shape, info)  # (metres, camera) or None
        base = None if depth is None else self.projector.points(*depth, pose)
        maps = self.mapper.map(labels, camera, pose, settings.grid,
                               footprint_run(settings.footprint_run, labels.shape[0]),
                               confidence, settings.footprint_confidence,
                               settings.free_confidence, settings.free_margin, withhold_free,
                               base, settings.source == "depth", settings.max_height,
                               mirror_confidence if settings.mirror_check else None)
        self.last_camera = (camera, labels.shape)
        out = Header(stamp=header.stamp, frame_id=settings.base_frame)
        for name, grid in maps.group_grids().items():
            if self.grid_pubs[name].get_subscription_count():
                self.grid_pubs[name].publish(
                    occupancy_grid_message(grid, maps.resolution, maps.origin, out))
        if self.costmap_pub.get_subscription_count():
            self.costmap_pub.publish(
                occupancy_grid_message(maps.costmap(), maps.resolution, maps.origin, out))
        if self.points_pub.get_subscription_count():
            points = ground_points(maps, labels, self.metadata.class_colors,
                                   step=settings.points_step)
            self.points_pub.publish(point_cloud_message(points, out))
        clouds = {
            "obstacle_points": lambda: obstacle_points(
                maps, settings.obstacle_points_height, settings.points_step),
            "free_points": lambda: free_points(maps, settings.points_step,
                                               settings.free_points_height),
            "aligned_points": lambda: aligned_points(maps)}
        for name, points in clouds.items():
            if self.clouds[name].get_subscription_count():
                self.clouds[name].publish(point_cloud_message(points(), out))
        if depth is not None and self.semantic_pub.get_subscription_count():
            in_base = settings.points_frame == "base"
            points = base if in_base else self.projector.points(*depth)  # optical frame
            cloud = semantic_points(points, labels, confidence, self.metadata.class_colors)
            self.semantic_pub.publish(point_cloud_message(cloud, out if in_base else header))

    def _depth(self, header: Header, label_shape, info):
        """Return the frame's (depth metres at the labels' size, its camera), or None: flat.

        Sets last_source. Raises ValueError with ground.source depth and no depth to use.
        """
        source = self.settings.source
        if source == "flat":
            self.last_source = "flat ground (ground.source flat)"
            return None
        metres, camera, note = self.depth.for_frame(header, label_shape, info)
        if metres is None:
            self.last_source = f"flat ground: {note}" if source == "auto" else f"none: {note}"
            if source == "depth":
                raise ValueError(f"ground.source is depth but {note}")
            return None
        valid = float(np.isfinite(metres).mean())
        self.last_source = (f"depth ({note}, {100 * valid:.0f}% of the pixels valid)"
                            + (", flat ground elsewhere" if source == "auto" else ""))
        return metres, camera

    def publish_or_warn(self, header: Header, labels, info, confidence, withhold_free: bool,
                        stats, mirror_confidence=None) -> None:
        """:meth:`publish`; a ValueError is noted in ``stats`` and logged (throttled) instead.

        The frame's other outputs are out already: this says why no grids came.
        """
        try:
            self.publish(header, labels, info, confidence, withhold_free, mirror_confidence)
        except ValueError as exc:
            stats.note_error(f"ground grids: {exc}")
            self.node.get_logger().warning(f"ground grids: {exc}",
                                           throttle_duration_sec=WARNING_PERIOD_S)

    def _publish_label_info(self, outputs: str) -> None:
        """vision_msgs/LabelInfo (transient local) where vision_msgs is installed."""
        try:
            from vision_msgs.msg import LabelInfo, VisionClass
        except ImportError as exc:
            self.node.get_logger().info(
                f"~/label_info not published: vision_msgs is not installed ({exc})")
            return
        self.label_info_pub = self.node.create_publisher(LabelInfo, f"{outputs}label_info",
                                                         LATCHED)
        self.label_info_pub.publish(LabelInfo(
            header=Header(stamp=self.node.get_clock().now().to_msg()),
            class_map=[VisionClass(class_id=i, class_name=name)
                       for i, name in enumerate(self.metadata.class_names)]))

