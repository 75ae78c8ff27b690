r"""Offline evaluation on a ROS graph: a bag replayed into the segmentation node, scored live.

    ros2 launch lednet_ros evaluate.launch.py bag:=camvid_test_bag rate:=0.5 report_dir:=eval
    # or play it yourself, in another terminal:
    ros2 launch lednet_ros evaluate.launch.py
    ros2 bag play --clock camvid_test_bag

Starts segment.launch.py (use_sim_time on by default) and the evaluator node, which scores the
node's labels against the bag's ground-truth topic. With bag:=, the bag is played with --clock
(`ros2 bag play` where rosbag2 is installed, else this package's bag_player) and the launch shuts
down two seconds after the bag ends; the evaluator writes its report (report.json, report.md,
confusion.png in report_dir) at shutdown, or, when not a single frame was scored, no report and
an error: the launch then exits with 1. Bags come from `ros2 run lednet_ros write_bag` (image,
camera_info and ground-truth topics with the same stamps).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, ExecuteProcess,
                            IncludeLaunchDescription, OpaqueFunction, RegisterEventHandler,
                            TimerAction)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node

from lednet_ros.ros.launch_checks import (
    LaunchConfigurationError, fail_when_it_fails, package_installed,
)

PACKAGE = "lednet_ros"
NODE_NAME = "lednet_segmentation"
# bag_player waits this long for the segmentation node and the evaluator to subscribe to the
# bag's topics (loading the network takes seconds, more on a busy CPU), then plays anyway.
SUBSCRIBER_WAIT_S = 120
REPORT_WRITE_S = 30  # seconds the evaluator has after SIGINT to write its report


def launch_arguments(config: str) -> list[DeclareLaunchArgument]:
    """Every argument of this launch file, each with its default and description."""
    return [
        DeclareLaunchArgument(
            "bag", default_value="",
            description="rosbag2 to play with --clock (`ros2 bag play` where rosbag2 is "
                        "installed, else this package's bag_player); '' plays nothing (play "
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
        DeclareLaunchArgument(
            "use_sim_time", default_value="true", choices=["true", "false"],
            description="Both nodes run on /clock (the bag's time, played with --clock); false "
                        "when the frames come live from a camera."),
        DeclareLaunchArgument(
            "rviz", default_value="false", choices=["true", "false"],
            description="Also start RViz2 showing the colour mask and the overlay."),
        DeclareLaunchArgument(
            "fastdds_profile", default_value=os.path.join(config, "fastdds_shm.xml"),
            description="Fast DDS XML profile for every process of this launch (large frames "
                        "over shared memory); '' leaves the environment as it is."),
    ]


def check_arguments(context) -> list:
    """Check bag:= and rate:= before anything starts (so no node is left on its own)."""
    bag = LaunchConfiguration("bag").perform(context)
    if bag and not os.path.exists(bag):
        raise LaunchConfigurationError(f"bag:={bag}: no such bag")
    rate = LaunchConfiguration("rate").perform(context)
    try:
        if not float(rate) > 0:
            raise ValueError
    except ValueError:
        raise LaunchConfigurationError(f"rate:={rate}: expected a positive number") from None
    return []


def play_bag(context) -> list:
    """Return the bag player with --clock, and the launch's shutdown two seconds after it ends.

    The player is `ros2 bag play` where rosbag2 is installed, else this package's bag_player
    (which first waits for the nodes to subscribe).
    """
    bag = LaunchConfiguration("bag").perform(context)
    if not bag:
        return []
    rate = LaunchConfiguration("rate").perform(context)
    if package_installed("ros2bag"):
        play = ExecuteProcess(cmd=["ros2", "bag", "play", "--clock", "--rate", rate,
                                   "--delay", "2.0", bag], output="screen")
    else:
        play = Node(package=PACKAGE, executable="bag_player", name="lednet_bag_player",
                    arguments=[bag, "--clock", "--rate", rate, "--delay", "1.0",
                               "--wait-for-subscribers", str(SUBSCRIBER_WAIT_S)],
                    output="screen")
    finish = RegisterEventHandler(OnProcessExit(
        target_action=play,
        on_exit=[TimerAction(period=2.0, actions=[EmitEvent(event=Shutdown(
            reason="the bag has been played"))])],
    ))
    return [play, fail_when_it_fails(play), finish]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    config = os.path.join(share, "config")
    arg = LaunchConfiguration
    passed_on = ("image", "camera_info", "weights", "params_file", "namespace", "use_sim_time",
                 "rviz", "fastdds_profile")
    segmentation = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "segment.launch.py")),
        launch_arguments={name: arg(name) for name in passed_on}.items(),
    )
    evaluator = Node(
        package=PACKAGE, executable="evaluator_node", name="lednet_evaluator",
        namespace=arg("namespace"),
        parameters=[{"use_sim_time": arg("use_sim_time"), "weights": arg("weights"),
                     "report_dir": arg("report_dir")}],
        remappings=[("labels", PathJoinSubstitution(["/", arg("namespace"), NODE_NAME,
                                                     "labels"])),
                    ("ground_truth", arg("ground_truth"))],
        # The report is written after Ctrl-C/shutdown: time for that before SIGTERM.
        sigterm_timeout=str(REPORT_WRITE_S), output="screen", emulate_tty=True,
    )
    return LaunchDescription([
        *launch_arguments(config), OpaqueFunction(function=check_arguments), segmentation,
        evaluator, fail_when_it_fails(evaluator, status_is_result=True),
        OpaqueFunction(function=play_bag),
    ])
