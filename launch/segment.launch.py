r"""The LEDNet segmentation node with the shipped parameters, transport profile and optional RViz.

    ros2 launch lednet_ros segment.launch.py
    ros2 launch lednet_ros segment.launch.py image:=/front/image_raw \
        camera_info:=/front/camera_info
    ros2 launch lednet_ros segment.launch.py namespace:=front rviz:=true \
        weights:=/path/w.safetensors
    ros2 launch lednet_ros segment.launch.py --show-args

The Fast DDS profile (fastdds_profile) is set for everything this launch starts, so a camera driver
included from the same launch file after this one carries full-resolution frames too.

Loud failures: a params_file that does not exist, or rviz:=true without rviz2 installed, stops the
launch before anything starts; when the segmentation node exits with an error, the launch shuts
down and `ros2 launch` exits with 1.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from lednet_ros.ros.launch_checks import (
    fail_when_it_fails, fastdds_profile_for_all, require_file, require_package,
)

PACKAGE = "lednet_ros"
NODE_NAME = "lednet_segmentation"
# the node's topics config/lednet.rviz shows (relative to the node)
RVIZ_TOPICS = ("color_mask", "overlay", "costmap", "grid/drivable", "ground_points")


def launch_arguments(config: str) -> list[DeclareLaunchArgument]:
    """Every argument of this launch file, each with its default and description."""
    boolean = ["true", "false"]
    return [
        DeclareLaunchArgument(
            "image", default_value="/camera/image_raw",
            description="Camera image topic (sensor_msgs/Image) the node's 'image' input is "
                        "remapped to; with input_compressed the node reads <image>/compressed."),
        DeclareLaunchArgument(
            "camera_info", default_value="/camera/camera_info",
            description="CameraInfo topic of that camera (remaps the node's 'camera_info')."),
        DeclareLaunchArgument(
            "depth", default_value="depth",
            description="Depth image registered to the camera image (16UC1 mm or 32FC1 m; "
                        "remaps the node's 'depth'); the default leaves it unconnected."),
        DeclareLaunchArgument(
            "depth_camera_info", default_value="depth_camera_info",
            description="CameraInfo of that depth image (remaps 'depth_camera_info')."),
        DeclareLaunchArgument(
            "lifecycle", default_value="false", choices=boolean,
            description="Start the managed (lifecycle) node, unconfigured, for a lifecycle "
                        "manager such as Nav2's to configure and activate."),
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(config, "lednet.yaml"),
            description="Node parameters (YAML, '/**: ros__parameters:')."),
        DeclareLaunchArgument(
            "namespace", default_value="",
            description="Namespace of the node; its outputs become <namespace>/" + NODE_NAME
                        + "/labels etc. Relative input topics are resolved in it."),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", choices=boolean,
            description="Use /clock (e.g. a bag played with --clock) as the node's time."),
        DeclareLaunchArgument(
            "rviz", default_value="false", choices=boolean,
            description="Also start RViz2 showing the colour mask and the overlay."),
        DeclareLaunchArgument(
            "weights", default_value="",
            description="Weights file (.safetensors) overriding params_file; '' keeps the "
                        "params_file value (whose '' is the packaged CamVid weights)."),
        DeclareLaunchArgument(
            "fastdds_profile", default_value=os.path.join(config, "fastdds_shm.xml"),
            description="Fast DDS XML profile set as FASTDDS_DEFAULT_PROFILES_FILE (Fast DDS "
                        "3.x) and FASTRTPS_DEFAULT_PROFILES_FILE (2.x) for every process of "
                        "this launch (large frames over shared memory); '' leaves the "
                        "environment as it is."),
    ]


def launch_nodes(context, config: str) -> list:
    """Return the segmentation node, its failure handler and RViz2 (started with rviz:=true).

    Everything is checked before any process starts, so a refused argument never leaves a node
    running on its own.
    """
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    params_file = require_file(value("params_file"), "params_file")
    if value("rviz") == "true":
        require_package("rviz2", "rviz:=true")
    image = value("image")
    overrides = {"use_sim_time": LaunchConfiguration("use_sim_time")}
    if value("weights"):
        overrides["weights"] = value("weights")
    namespace = value("namespace").strip("/")
    executable = ("segmentation_lifecycle_node" if value("lifecycle") == "true"
                  else "segmentation_node")
    node = Node(
        package=PACKAGE, executable=executable, name=NODE_NAME, namespace=namespace,
        parameters=[params_file, overrides],
        remappings=[("image", image), ("image/compressed", image.rstrip("/") + "/compressed"),
                    ("camera_info", value("camera_info")), ("depth", value("depth")),
                    ("depth_camera_info", value("depth_camera_info"))],
        output="screen", emulate_tty=True,
    )
    # config/lednet.rviz names the un-namespaced topics; point them into the namespace.
    prefix = f"/{namespace}" if namespace else ""
    rviz = Node(
        package="rviz2", executable="rviz2", name="rviz2", namespace=namespace,
        arguments=["-d", os.path.join(config, "lednet.rviz")],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        remappings=[(f"/{NODE_NAME}/{topic}", f"{prefix}/{NODE_NAME}/{topic}")
                    for topic in RVIZ_TOPICS if prefix],
        condition=IfCondition(LaunchConfiguration("rviz")), output="screen",
    )
    return [node, fail_when_it_fails(node), rviz]


def generate_launch_description() -> LaunchDescription:
    config = os.path.join(get_package_share_directory(PACKAGE), "config")
    return LaunchDescription([
        *launch_arguments(config),
        fastdds_profile_for_all("fastdds_profile"),
        OpaqueFunction(function=launch_nodes, args=[config]),
    ])
