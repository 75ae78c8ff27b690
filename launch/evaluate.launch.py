r"""Offline evaluation on a ROS graph: a bag replayed into the segmentation node, scored live.

    ros2 launch lednet_ros evaluate.launch.py bag:=camvid_test_bag rate:=0.5 report_dir:=eval
    # or play it yourself, in another terminal:
    ros2 launch lednet_ros evaluate.launch.py
    ros2 bag play --clock camvid_test_bag

Starts segment.launch.py (use_sim_time on) and the evaluator node, which scores the node's labels
against the bag's ground-truth topic. With bag:=, `ros2 bag play --clock` runs too and the launch
shuts down two seconds after the bag ends; the evaluator writes its report (report.json,
report.md, confusion.png in report_dir) at shutdown. Bags come from `ros2 run lednet_ros
write_bag` (image, camera_info and ground-truth topics with the same stamps).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, ExecuteProcess,
                            IncludeLaunchDescription, RegisterEventHandler, TimerAction)
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, NotEqualsSubstitution, PathJoinSubstitution
from launch_ros.actions import Node

PACKAGE = "lednet_ros"
NODE_NAME = "lednet_segmentation"


def launch_arguments(config: str) -> list[DeclareLaunchArgument]:
    """Every argument of this launch file, each with its default and description."""
    return [
        DeclareLaunchArgument(
            "bag", default_value="",
            description="rosbag2 to play with `ros2 bag play --clock`; '' plays nothing (play "
                        "it yourself with --clock)."),
        DeclareLaunchArgument(
            "rate", default_value="1.0",
            description="Playback rate of bag:=; lower it when the node drops frames (the "
                        "report counts them as ground truth without prediction)."),
        DeclareLaunchArgument(
            "image", default_value="/camera/image_raw",
            description="Image topic of the bag (the node's input)."),
        DeclareLaunchArgument(
            "camera_info", default_value="/camera/camera_info",
            description="CameraInfo topic of the bag."),
        DeclareLaunchArgument(
            "ground_truth", default_value="/ground_truth/labels",
            description="Ground-truth label topic of the bag (mono8 class ids, image stamps)."),
        DeclareLaunchArgument(
            "weights", default_value="",
            description="Weights file for the node and the evaluator's class names; '' = the "
                        "packaged CamVid weights."),
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(config, "lednet.yaml"),
            description="Segmentation node parameters (YAML), e.g. input_width/input_height."),
        DeclareLaunchArgument(
            "namespace", default_value="",
            description="Namespace of the segmentation node and the evaluator."),
        DeclareLaunchArgument(
            "report_dir", default_value="lednet_evaluation",
            description="Folder the evaluator writes report.json, report.md and confusion.png "
                        "to (relative to the launch's working directory)."),
    ]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    config = os.path.join(share, "config")
    arg = LaunchConfiguration
    segmentation = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "segment.launch.py")),
        launch_arguments={
            "image": arg("image"), "camera_info": arg("camera_info"),
            "weights": arg("weights"), "params_file": arg("params_file"),
            "namespace": arg("namespace"), "use_sim_time": "true",
        }.items(),
    )
    evaluator = Node(
        package=PACKAGE, executable="evaluator_node", name="lednet_evaluator",
        namespace=arg("namespace"),
        parameters=[{"use_sim_time": True, "weights": arg("weights"),
                     "report_dir": arg("report_dir")}],
        remappings=[("labels", PathJoinSubstitution(["/", arg("namespace"), NODE_NAME,
                                                     "labels"])),
                    ("ground_truth", arg("ground_truth"))],
        output="screen", emulate_tty=True,
    )
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", "--clock", "--rate", arg("rate"), "--delay", "2.0",
             arg("bag")],
        condition=IfCondition(NotEqualsSubstitution(arg("bag"), "")), output="screen",
    )
    finish = RegisterEventHandler(OnProcessExit(
        target_action=play,
        on_exit=[TimerAction(period=2.0, actions=[EmitEvent(event=Shutdown(
            reason="the bag has been played"))])],
    ))
    return LaunchDescription([*launch_arguments(config), segmentation, evaluator, play, finish])
