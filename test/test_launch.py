"""The launch file, the parameters file, the RViz config and the Fast DDS profile.

The files themselves are checked against the real node (started with random weights) and a real
Fast DDS participant. The launch file needs ROS 2's `launch` and `launch_ros`, which are not on
PyPI: those tests skip where they are absent and run on a ROS 2 install.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rclpy", reason="rclpy is not installed")
try:
    from lednet_ros.msg import ClassInfo  # noqa: F401
except ImportError as exc:
    pytest.skip(f"lednet_ros.msg not importable ({exc}): build with colcon and source "
                "install/setup.bash", allow_module_level=True)

import rclpy  # noqa: E402
from rclpy.parameter import Parameter, parameter_value_to_python  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402

from lednet_ros.nodes.segmentation_node import NODE_NAME, PARAMETERS, SegmentationNode  # noqa: E402
from ros_helpers import (  # noqa: E402
    NodeProcess, process_environment, ros_context, spinning, wait_until,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"
PROFILE = CONFIG / "fastdds_shm.xml"
FASTDDS = "{http://www.eprosima.com}"
FRAME_4K_RGB8 = 3840 * 2160 * 3
LAUNCH_ARGUMENTS = {"image", "camera_info", "params_file", "namespace", "use_sim_time", "rviz",
                    "weights", "fastdds_profile"}


def ros_launch():
    """ROS 2's launch and launch_ros, or a skip naming what is missing (PyPI's unrelated `launch`
    package lacks LaunchDescription)."""
    pytest.importorskip("launch_ros", reason="ROS 2's launch_ros is not installed (it and "
                        "launch are not on PyPI; they come with a ROS 2 install)")
    launch = pytest.importorskip("launch", reason="ROS 2's launch is not installed")
    if not hasattr(launch, "LaunchDescription"):
        pytest.skip(f"the `launch` found ({launch}) is not ROS 2's launch")
    return launch


def installed_share() -> Path:
    index = pytest.importorskip("ament_index_python.packages",
                                reason="ament_index_python is not installed")
    try:
        return Path(index.get_package_share_directory("lednet_ros"))
    except index.PackageNotFoundError:
        pytest.skip("lednet_ros is not on AMENT_PREFIX_PATH: build with colcon and source "
                    "install/setup.bash")


def load_launch_module(path: Path):
    spec = importlib.util.spec_from_file_location("segment_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- RViz config ------------------------------------------------------------------------------

def rviz_image_topics() -> list[str]:
    config = yaml.safe_load((CONFIG / "lednet.rviz").read_text())
    displays = config["Visualization Manager"]["Displays"]
    return [d["Topic"]["Value"] for d in displays if d["Class"] == "rviz_default_plugins/Image"]


def test_rviz_config_shows_the_nodes_colour_mask_and_overlay(random_weights):
    topics = rviz_image_topics()
    assert topics == [f"/{NODE_NAME}/color_mask", f"/{NODE_NAME}/overlay"]
    # ... and those are the topics the node really publishes under its default name.
    with ros_context() as context:
        node = SegmentationNode(context=context, parameter_overrides=[
            Parameter("weights", value=str(random_weights)), Parameter("engine", value="torch")])
        probe = rclpy.create_node("rviz_probe", context=context)

        def publishers():
            found = dict(probe.get_publisher_names_and_types_by_node(NODE_NAME, "/"))
            return found if set(topics) <= set(found) else None

        with spinning(context, node, probe):
            types = wait_until(publishers, message=f"the publishers of /{NODE_NAME}")
    for topic in topics:
        assert types[topic] == ["sensor_msgs/msg/Image"]


# ---- parameters file --------------------------------------------------------------------------

def shipped_parameters() -> dict:
    content = yaml.safe_load((CONFIG / "lednet.yaml").read_text())
    assert list(content) == ["/**"], "parameters must sit under '/**' so namespacing works"
    return content["/**"]["ros__parameters"]


def test_params_file_lists_every_node_parameter_with_its_default():
    values = shipped_parameters()
    assert set(values) == set(PARAMETERS), (
        f"unknown to the node: {sorted(set(values) - set(PARAMETERS))}; "
        f"missing from the file: {sorted(set(PARAMETERS) - set(values))}")
    for name, value in values.items():
        default = PARAMETERS[name][0]
        assert value == default and type(value) is type(default), (
            f"{name}: file has {value!r}, the node's default is {default!r}")


def test_params_file_applies_to_the_node_under_a_namespace(random_weights, tmp_path):
    """rcl parses the file; every value reaches the node; the types are the declared ones."""
    values = shipped_parameters()
    changed = dict(values, grid_rows=2, overlay_alpha=0.25, qos_reliability="reliable",
                   weights=str(random_weights), engine="torch")
    params_file = tmp_path / "lednet.yaml"
    params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": changed}}))
    for path, expected in ((CONFIG / "lednet.yaml", values), (params_file, changed)):
        context = rclpy.Context()
        rclpy.init(context=context, args=["--ros-args", "--params-file", str(path),
                                          "-p", f"weights:={random_weights}",
                                          "-p", "engine:=torch"])
        try:
            node = SegmentationNode(context=context, namespace="/params_file_test")
            applied = {name: node.get_parameter(name).value for name in expected}
            node.destroy_node()
        finally:
            rclpy.try_shutdown(context=context)
        expected = dict(expected, weights=str(random_weights), engine="torch")
        assert applied == expected


# ---- Fast DDS profile -------------------------------------------------------------------------

def test_fastdds_profile_carries_4k_frames_over_shared_memory_and_keeps_udp():
    root = ET.parse(PROFILE).getroot()
    transports = {d.findtext(f"{FASTDDS}transport_id"): d
                  for d in root.iter(f"{FASTDDS}transport_descriptor")}
    kinds = {tid: d.findtext(f"{FASTDDS}type") for tid, d in transports.items()}
    assert sorted(kinds.values()) == ["SHM", "UDPv4"]
    (shm,) = [d for d in transports.values() if d.findtext(f"{FASTDDS}type") == "SHM"]
    max_message = int(shm.findtext(f"{FASTDDS}maxMessageSize"))
    segment = int(shm.findtext(f"{FASTDDS}segment_size"))
    assert max_message > FRAME_4K_RGB8 + 4096  # a 4K rgb8 frame and its headers in one message
    assert segment >= 4 * max_message and segment < 2**32  # several in flight; a uint32
    (participant,) = root.iter(f"{FASTDDS}participant")
    assert participant.get("is_default_profile") == "true"
    rtps = participant.find(f"{FASTDDS}rtps")
    assert rtps.findtext(f"{FASTDDS}useBuiltinTransports") == "false"
    used = [e.text for e in rtps.find(f"{FASTDDS}userTransports")]
    assert sorted(used) == sorted(transports)


PARTICIPANT = """
import os, sys, rclpy
rclpy.init()
node = rclpy.create_node("profile_probe")
mine = set()
for fd in os.listdir("/proc/self/fd"):
    try:
        mine.add(os.path.realpath(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
sizes = [os.path.getsize(p[:-3]) for p in mine
         if p.startswith("/dev/shm/") and p.endswith("_el") and os.path.exists(p[:-3])]
print("segments", *sizes)
node.destroy_node()
rclpy.shutdown()
"""


def test_fast_dds_loads_the_profile_and_makes_the_large_segment(tmp_path):
    """A real participant with the profile: no XML errors, and its segment has the set size."""
    if os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        pytest.skip(f"RMW_IMPLEMENTATION is {os.environ['RMW_IMPLEMENTATION']}, not Fast DDS")
    if not Path("/dev/shm").is_dir() or not Path("/proc/self/fd").is_dir():
        pytest.skip("needs Linux /dev/shm and /proc")
    root = ET.parse(PROFILE).getroot()
    segment = int(next(root.iter(f"{FASTDDS}segment_size")).text)
    env = process_environment({"FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)})
    result = subprocess.run([sys.executable, "-c", PARTICIPANT], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Error" not in output, output
    segments = [int(size) for size in result.stdout.split("segments", 1)[1].split()]
    assert max(segments) >= segment, f"shared-memory segments {segments}, expected {segment}"


# ---- launch file ------------------------------------------------------------------------------

def test_launch_arguments_are_the_documented_ones_each_described():
    launch = ros_launch()
    share = installed_share()
    module = load_launch_module(REPO / "launch" / "segment.launch.py")
    arguments = module.generate_launch_description().get_launch_arguments()
    assert {a.name for a in arguments} == LAUNCH_ARGUMENTS
    for argument in arguments:
        assert len(argument.description) > 20, f"{argument.name} is not described"
    context = launch.LaunchContext()
    defaults = {a.name: launch.utilities.perform_substitutions(context, a.default_value)
                for a in arguments}
    assert defaults["image"] == "/camera/image_raw"
    assert defaults["camera_info"] == "/camera/camera_info"
    assert Path(defaults["params_file"]) == share / "config" / "lednet.yaml"
    assert Path(defaults["fastdds_profile"]) == share / "config" / "fastdds_shm.xml"
    assert (defaults["rviz"], defaults["use_sim_time"], defaults["weights"]) == ("false",
                                                                                 "false", "")


@pytest.mark.parametrize("namespace", ["", "front"])
def test_launch_starts_rviz_only_when_asked_with_the_namespaced_topics(namespace):
    launch = ros_launch()
    share = installed_share()
    module = load_launch_module(REPO / "launch" / "segment.launch.py")
    description = module.generate_launch_description()
    for rviz in ("false", "true"):
        context = launch.LaunchContext()
        for argument in description.get_launch_arguments():
            context.launch_configurations[argument.name] = launch.utilities.perform_substitutions(
                context, argument.default_value)
        context.launch_configurations.update(namespace=namespace, rviz=rviz)
        node, viewer = module.launch_nodes(context, str(share / "config"))
        assert (node.node_package, node.node_executable) == ("lednet_ros", "segmentation_node")
        assert (viewer.node_package, viewer.node_executable) == ("rviz2", "rviz2")
        assert viewer.condition.evaluate(context) is (rviz == "true")
        viewer._perform_substitutions(context)  # what execute() does first
        prefix = f"/{namespace}" if namespace else ""
        expected = [(f"/{NODE_NAME}/{t}", f"{prefix}/{NODE_NAME}/{t}")
                    for t in ("color_mask", "overlay")] if namespace else []
        assert list(viewer.expanded_remapping_rules or []) == expected


LAUNCH_RUNNER = """
import sys
from launch import LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

path, *pairs = sys.argv[1:]
service = LaunchService(noninteractive=True)
service.include_launch_description(IncludeLaunchDescription(
    PythonLaunchDescriptionSource(path),
    launch_arguments=[tuple(pair.split(":=", 1)) for pair in pairs]))
sys.exit(service.run())
"""


def process_environment_of(parent_pid: int, marker: str) -> dict:
    """The environment of a descendant of ``parent_pid`` whose command line contains ``marker``."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (proc / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if marker in cmdline and ppid == parent_pid:
                raw = (proc / "environ").read_bytes().split(b"\0")
                return dict(item.decode().split("=", 1) for item in raw if b"=" in item)
        except (OSError, ValueError):
            continue
    return {}


def test_launch_starts_the_node_with_parameters_remappings_and_profile(tmp_path, random_weights):
    """`ros2 launch lednet_ros segment.launch.py ...` as LaunchService runs it, checked from the
    graph: node name, remapped inputs, parameters from params_file and arguments, and the Fast DDS
    profile in the node's environment."""
    ros_launch()
    share = installed_share()
    launch_file = share / "launch" / "segment.launch.py"
    params = dict(shipped_parameters(), grid_rows=2, qos_depth=3, engine="torch")
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    arguments = ["namespace:=launch_test", "image:=/launch_cam/image_raw",
                 "camera_info:=/launch_cam/info", f"params_file:={params_file}",
                 f"weights:={random_weights}", "use_sim_time:=true"]
    env = process_environment()
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)  # the launch file must set it
    command = [sys.executable, "-c", LAUNCH_RUNNER, str(launch_file), *arguments]
    with ros_context() as context, NodeProcess(command, tmp_path, env=env) as launched:
        probe = rclpy.create_node("launch_probe", context=context)
        with spinning(context, probe):
            wait_until(lambda: ("lednet_segmentation", "/launch_test")
                       in probe.get_node_names_and_namespaces(), timeout=90,
                       message="/launch_test/lednet_segmentation in the graph")
            subscribed = dict(wait_until(
                lambda: probe.get_subscriber_names_and_types_by_node(NODE_NAME, "/launch_test"),
                message="its subscriptions"))
            assert subscribed["/launch_cam/image_raw"] == ["sensor_msgs/msg/Image"]
            assert subscribed["/launch_cam/info"] == ["sensor_msgs/msg/CameraInfo"]
            client = AsyncParameterClient(probe, f"/launch_test/{NODE_NAME}")
            assert client.wait_for_services(timeout_sec=30)
            names = ["grid_rows", "qos_depth", "weights", "use_sim_time", "overlay_alpha"]
            future = client.get_parameters(names)
            wait_until(future.done, message="get_parameters")
            values = [parameter_value_to_python(v) for v in future.result().values]
        assert values == [2, 3, str(random_weights), True, 0.5]
        node_env = process_environment_of(launched.process.pid, f"__node:={NODE_NAME}")
        assert node_env.get("FASTDDS_DEFAULT_PROFILES_FILE") == str(share / "config"
                                                                    / "fastdds_shm.xml")
    assert "Traceback" not in launched.output(), launched.output()


# ---- evaluate.launch.py -----------------------------------------------------------------------

EVALUATE_ARGUMENTS = {"bag", "rate", "image", "camera_info", "ground_truth", "weights",
                      "params_file", "namespace", "report_dir"}


@pytest.mark.parametrize("launch_file", sorted((REPO / "launch").glob("*.launch.py")),
                         ids=lambda p: p.name)
def test_every_launch_argument_is_described_in_the_source(launch_file):
    """Without `launch` installed: each DeclareLaunchArgument has a default and a description."""
    import ast

    calls = [node for node in ast.walk(ast.parse(launch_file.read_text()))
             if isinstance(node, ast.Call) and getattr(node.func, "id", "")
             == "DeclareLaunchArgument"]
    assert calls, f"{launch_file.name} declares no arguments"
    for call in calls:
        keywords = {k.arg: k.value for k in call.keywords}
        name = ast.literal_eval(call.args[0])
        assert "default_value" in keywords, f"{name} has no default"
        description = keywords.get("description")
        text = "".join(ast.literal_eval(part) for part in ast.walk(description)
                       if isinstance(part, ast.Constant) and isinstance(part.value, str))
        assert len(text) > 20, f"{launch_file.name}: {name} is not described"
    if launch_file.name == "evaluate.launch.py":
        assert {ast.literal_eval(c.args[0]) for c in calls} == EVALUATE_ARGUMENTS


def test_evaluate_launch_runs_node_evaluator_and_bag_play():
    launch = ros_launch()
    share = installed_share()
    module = load_launch_module(REPO / "launch" / "evaluate.launch.py")
    description = module.generate_launch_description()
    assert {a.name for a in description.get_launch_arguments()} == EVALUATE_ARGUMENTS
    entities = description.entities
    include = next(e for e in entities if isinstance(e, launch.actions.IncludeLaunchDescription))
    assert include.launch_description_source.location.endswith("segment.launch.py")
    context = launch.LaunchContext()
    for argument in description.get_launch_arguments():
        context.launch_configurations[argument.name] = launch.utilities.perform_substitutions(
            context, argument.default_value)
    context.launch_configurations.update(namespace="front", ground_truth="/gt")
    evaluator = next(e for e in entities if getattr(e, "node_executable", None)
                     == "evaluator_node")
    evaluator._perform_substitutions(context)
    assert dict(evaluator.expanded_remapping_rules) == {
        "labels": f"/front/{NODE_NAME}/labels", "ground_truth": "/gt"}
    play = next(e for e in entities if isinstance(e, launch.actions.ExecuteProcess))
    assert play.condition.evaluate(context) is False  # no bag: nothing played
    context.launch_configurations["bag"] = "some_bag"
    assert play.condition.evaluate(context) is True
    assert share.is_dir()
