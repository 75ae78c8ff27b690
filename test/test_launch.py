"""The launch files, the parameters file, the RViz config and the Fast DDS profile.

The files themselves are checked against the real node (started with random weights) and a real
Fast DDS participant. The launch files need ROS 2's `launch` and `launch_ros`, which are not on
PyPI: those tests skip where they are absent (or present but not importable, with the import
error as the reason) and run on a ROS 2 install. There they run the real LaunchService, as
`ros2 launch` does, in its own session like a terminal's, and check what a user sees: exit
status, messages, the nodes' parameters, the report, and that no process is left behind.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from skips import skip_without_built_messages

skip_without_built_messages()


import rclpy  # noqa: E402
from rclpy.parameter import Parameter, parameter_value_to_python  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402

from lednet_ros.core.inference.checkpoint import read_metadata  # noqa: E402
from lednet_ros.core.inference.segmenter import default_weights_path  # noqa: E402
from lednet_ros.nodes.segmentation_node import NODE_NAME, SegmentationNode  # noqa: E402
from lednet_ros.tools.cli import PROFILE_VARIABLES, profile_environment  # noqa: E402
from lednet_ros.ros.segmentation_parameters import (  # noqa: E402
    FIXED_PARAMETERS, class_groups, group_defaults, group_parameters,
)

from ros_helpers import (  # noqa: E402
    process_environment, ros_context, run_process, spinning, wait_until,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"
PROFILE = CONFIG / "fastdds_shm.xml"
FASTDDS = "{http://www.eprosima.com}"
FRAME_4K_RGB8 = 3840 * 2160 * 3
LAUNCH_ARGUMENTS = {"image", "camera_info", "depth", "depth_camera_info", "lifecycle",
                    "params_file", "namespace", "use_sim_time", "rviz", "weights",
                    "fastdds_profile"}
EVALUATE_ARGUMENTS = {"bag", "rate", "image", "camera_info", "ground_truth", "weights",
                      "params_file", "namespace", "report_dir", "use_sim_time", "rviz",
                      "fastdds_profile"}
NOT_ON_PYPI = "not on PyPI; it comes with a ROS 2 install"
# Under `ros2 launch`, the nodes import torch and build the network: a minute on a busy CPU.
START_TIMEOUT = 240.0


def import_or_skip(name: str, missing: str):
    """Import module ``name``, or skip with the real reason.

    The reason is ``missing`` when the module is not installed, and the import error itself when
    it is installed but cannot be imported (say launch_ros without composition_interfaces).
    """
    if importlib.util.find_spec(name) is None:
        pytest.skip(missing)
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        origin = importlib.util.find_spec(name).origin
        pytest.skip(f"{name} is installed ({origin}) but cannot be imported: "
                    f"{type(exc).__name__}: {exc}")


def ros_launch():
    """Return ROS 2's launch, with launch_ros importable; else skip with the reason.

    PyPI's unrelated `launch` package lacks LaunchDescription.
    """
    launch = import_or_skip("launch", f"ROS 2's launch is not installed ({NOT_ON_PYPI})")
    if not hasattr(launch, "LaunchDescription"):
        where = launch.__file__ or ", ".join(getattr(launch, "__path__", []))
        pytest.skip(f"the `launch` found ({where}) is not ROS 2's launch, which is not "
                    f"installed ({NOT_ON_PYPI})")
    import_or_skip("launch_ros", f"ROS 2's launch_ros is not installed ({NOT_ON_PYPI})")
    return launch


def installed_share() -> Path:
    index = pytest.importorskip("ament_index_python.packages",
                                reason="ament_index_python is not installed")
    try:
        return Path(index.get_package_share_directory("lednet_ros"))
    except index.PackageNotFoundError:
        pytest.skip("lednet_ros is not on AMENT_PREFIX_PATH: build with colcon and source "
                    "install/setup.bash")


def ros_package_installed(name: str) -> bool:
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix(name)
    except PackageNotFoundError:
        return False
    return True


def load_launch_module(path: Path):
    spec = importlib.util.spec_from_file_location(path.name.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_import_or_skip_gives_the_import_error_of_an_installed_module(tmp_path, monkeypatch):
    """Skip an installed module that fails to import with its ImportError (issue 17, item 7).

    As launch_ros does without composition_interfaces: not as 'not installed'.
    """
    name = f"lednet_test_broken_{uuid.uuid4().hex[:8]}"
    absent = f"lednet_test_absent_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(f"from {absent}.srv import LoadNode  # noqa\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(pytest.skip.Exception) as skipped:
        import_or_skip(name, "MISSING")
    message = str(skipped.value)
    assert "MISSING" not in message
    assert f"{name} is installed ({tmp_path / name}.py) but cannot be imported" in message
    assert f"ModuleNotFoundError: No module named '{absent}'" in message
    with pytest.raises(pytest.skip.Exception) as skipped:
        import_or_skip(absent, "MISSING")
    assert str(skipped.value) == "MISSING"
    assert import_or_skip("json", "MISSING") is json


# ---- RViz config ------------------------------------------------------------------------------

RVIZ_DISPLAYS = {  # topic -> the message type its display reads
    "color_mask": "sensor_msgs/msg/Image", "overlay": "sensor_msgs/msg/Image",
    "costmap": "nav_msgs/msg/OccupancyGrid", "grid/drivable": "nav_msgs/msg/OccupancyGrid",
    "ground_points": "sensor_msgs/msg/PointCloud2"}


def rviz_topics() -> list[str]:
    config = yaml.safe_load((CONFIG / "lednet.rviz").read_text())
    return [d["Topic"]["Value"] for d in config["Visualization Manager"]["Displays"]]


def test_rviz_config_shows_topics_the_node_publishes(random_weights):
    """Every display of config/lednet.rviz reads a topic the node publishes, with its type."""
    topics = rviz_topics()
    assert topics == [f"/{NODE_NAME}/{t}" for t in RVIZ_DISPLAYS]
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
    for topic, kind in RVIZ_DISPLAYS.items():
        assert types[f"/{NODE_NAME}/{topic}"] == [kind]


# ---- parameters file --------------------------------------------------------------------------

def flatten(values: dict, prefix: str = "") -> dict:
    """Join nested keys with '.', as rcl reads a params file: ground: camera_x: ..."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def shipped_parameters() -> dict:
    """Return the shipped file's parameters by their ROS names (nested keys joined with '.')."""
    content = yaml.safe_load((CONFIG / "lednet.yaml").read_text())
    assert list(content) == ["/**"], "parameters must sit under '/**' so namespacing works"
    return flatten(content["/**"]["ros__parameters"])


def node_defaults() -> tuple[dict, dict]:
    """Return the node's parameters with their defaults: (always declared, class groups).

    The class groups (groups.*) default to those of the weights' class set; a params file may
    list them, for the packaged weights.
    """
    fixed = {name: list(spec.default) if isinstance(spec.default, tuple) else spec.default
             for name, spec in FIXED_PARAMETERS.items() if "<" not in name}
    return fixed, group_defaults(read_metadata(default_weights_path()).dataset)


def test_the_commented_class_groups_of_the_params_file_are_the_packaged_weights_defaults():
    """Uncommented, the file's groups block names declared parameters with the defaults."""
    lines = (CONFIG / "lednet.yaml").read_text().splitlines()
    start = lines.index("    # groups:")
    block = []
    for line in lines[start:]:
        if not line.startswith("    #   ") and line != "    # groups:":
            break
        block.append(line.replace("# ", "", 1).split("#")[0])
    groups = flatten(yaml.safe_load("\n".join(line[4:] for line in block)), "")
    metadata = read_metadata(default_weights_path())
    assert groups == group_defaults(metadata.dataset)
    assert set(groups) == {"groups.names", "groups.obstacle_groups", "groups.free_groups",
                           *group_parameters(groups["groups.names"])}
    assert class_groups(groups, metadata.class_names).names == tuple(groups["groups.names"])


def test_params_file_lists_every_node_parameter_with_its_default():
    values = shipped_parameters()
    fixed, by_class_set = node_defaults()
    defaults = {**fixed, **by_class_set}
    assert set(fixed) <= set(values) <= set(defaults), (
        f"unknown to the node: {sorted(set(values) - set(defaults))}; "
        f"missing from the file: {sorted(set(fixed) - set(values))}")
    for name, value in values.items():
        default = defaults[name]
        assert value == default and type(value) is type(default), (
            f"{name}: file has {value!r}, the node's default is {default!r}")


def read_node_started_with(params_file: Path, read, namespace: str):
    """Start a segmentation node with ``params_file`` (torch, fp32); return ``read(node)``."""
    context = rclpy.Context()
    rclpy.init(context=context, args=["--ros-args", "--params-file", str(params_file),
                                      "-p", "engine:=torch", "-p", "precision:=fp32"])
    try:
        node = SegmentationNode(context=context, namespace=namespace)
        value = read(node)
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    return value


def test_params_file_applies_to_the_node_under_a_namespace(tmp_path):
    """Check that rcl parses the file and every value reaches the node with its declared type.

    The node runs the packaged weights, whose class groups the file lists.
    """
    values = shipped_parameters()
    changed = dict(values, grid_rows=2, overlay_alpha=0.25, qos_reliability="reliable",
                   engine="torch", precision="fp32")
    changed["ground.camera_height"] = 1.5
    params_file = tmp_path / "lednet.yaml"
    params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": changed}}))
    for path, expected in ((CONFIG / "lednet.yaml", values), (params_file, changed)):
        applied = read_node_started_with(
            path, lambda node: {name: node.values[name] for name in expected},  # what it runs
            "/params_file_test")
        expected = dict(expected, engine="torch", precision="fp32")
        assert applied == expected


def test_the_class_groups_example_of_the_docs_runs_on_the_packaged_weights(tmp_path):
    """docs/ground.md's groups file, as a user copies it, gives the node those groups."""
    text = (REPO / "docs" / "ground.md").read_text()
    example = text[text.index("**Class groups.**"):]
    example = example[example.index("```yaml\n") + 8:example.index("```\n", 8)]
    params_file = tmp_path / "groups.yaml"
    params_file.write_text(example)
    groups = read_node_started_with(params_file, lambda node: node.first_camera.ground.groups,
                                    "/groups_example_test")
    assert groups.names == ("road", "walkway", "things")
    assert groups.is_obstacle == (False, False, True)
    assert groups.is_free == (True, True, False)
    assert len(groups.class_ids[2]) == 7


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
    env = {name: value for name, value in process_environment().items()
           if name not in PROFILE_VARIABLES} | profile_environment(PROFILE)  # as the tools set it
    result = subprocess.run([sys.executable, "-c", PARTICIPANT], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Error" not in output, output
    segments = [int(size) for size in result.stdout.split("segments", 1)[1].split()]
    assert max(segments) >= segment, f"shared-memory segments {segments}, expected {segment}"


# ---- launch files, built without running them ------------------------------------------------

def configured_context(launch, description, **values):
    """Return a LaunchContext: each argument of ``description`` at its default, then ``values``."""
    context = launch.LaunchContext()
    for argument in description.get_launch_arguments():
        context.launch_configurations[argument.name] = launch.utilities.perform_substitutions(
            context, argument.default_value)
    context.launch_configurations.update(values)
    return context


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
    assert (defaults["lifecycle"], defaults["depth"]) == ("false", "depth")


@pytest.mark.parametrize("namespace", ["", "front"])
def test_launch_starts_rviz_only_when_asked_with_the_namespaced_topics(namespace):
    launch = ros_launch()
    share = installed_share()
    module = load_launch_module(REPO / "launch" / "segment.launch.py")
    description = module.generate_launch_description()
    context = configured_context(launch, description, namespace=namespace, rviz="false")
    node, on_exit, viewer = module.launch_nodes(context, str(share / "config"))
    assert (node.node_package, node.node_executable) == ("lednet_ros", "segmentation_node")
    assert isinstance(on_exit, launch.actions.RegisterEventHandler)
    assert (viewer.node_package, viewer.node_executable) == ("rviz2", "rviz2")
    assert viewer.condition.evaluate(context) is False
    viewer._perform_substitutions(context)  # what execute() does first
    prefix = f"/{namespace}" if namespace else ""
    expected = [(f"/{NODE_NAME}/{t}", f"{prefix}/{NODE_NAME}/{t}")
                for t in RVIZ_DISPLAYS] if namespace else []
    assert list(viewer.expanded_remapping_rules or []) == expected
    context = configured_context(launch, description, namespace=namespace, rviz="true")
    if ros_package_installed("rviz2"):
        viewer = module.launch_nodes(context, str(share / "config"))[2]
        assert viewer.condition.evaluate(context) is True
    else:  # refused before anything is built, let alone started
        with pytest.raises(RuntimeError, match="rviz:=true needs the ROS package 'rviz2'"):
            module.launch_nodes(context, str(share / "config"))


def test_evaluate_launch_runs_node_evaluator_and_a_bag_player(tmp_path):
    launch = ros_launch()
    installed_share()
    module = load_launch_module(REPO / "launch" / "evaluate.launch.py")
    description = module.generate_launch_description()
    assert {a.name for a in description.get_launch_arguments()} == EVALUATE_ARGUMENTS
    entities = description.entities
    include = next(e for e in entities if isinstance(e, launch.actions.IncludeLaunchDescription))
    source = include.launch_description_source
    source.get_launch_description(launch.LaunchContext())  # expands its location
    assert source.location.endswith("segment.launch.py")
    passed_on = dict(include.launch_arguments)
    assert {"use_sim_time", "rviz", "fastdds_profile", "params_file", "weights"} <= {
        launch.utilities.perform_substitutions(launch.LaunchContext(), name)
        if not isinstance(name, str) else name for name in passed_on}
    context = configured_context(launch, description, namespace="front", ground_truth="/gt",
                                 use_sim_time="false")
    evaluator = next(e for e in entities if getattr(e, "node_executable", None)
                     == "evaluator_node")
    evaluator._perform_substitutions(context)
    assert dict(evaluator.expanded_remapping_rules) == {
        "labels": f"/front/{NODE_NAME}/labels", "ground_truth": "/gt"}
    assert module.play_bag(context) == []  # no bag: nothing played
    bag = tmp_path / "some_bag"
    bag.mkdir()
    context.launch_configurations.update(bag=str(bag), rate="0.5")
    assert module.check_arguments(context) == []
    player, on_error, on_end = module.play_bag(context)
    text = launch.substitutions.TextSubstitution
    command = [launch.utilities.perform_substitutions(context, part) for part in player.cmd
               if all(isinstance(sub, text) for sub in part)]  # the arguments given as text
    if ros_package_installed("ros2bag"):
        assert command[:3] == ["ros2", "bag", "play"]
    else:
        assert (player.node_package, player.node_executable) == ("lednet_ros", "bag_player")
        assert "--wait-for-subscribers" in command
    assert str(bag) in command and "--clock" in command
    assert command[command.index("--rate") + 1] == "0.5"
    context.launch_configurations.update(bag=str(tmp_path / "nope"))
    with pytest.raises(RuntimeError, match="bag:=.*nope: no such bag"):
        module.check_arguments(context)
    context.launch_configurations.update(bag=str(bag), rate="0")
    with pytest.raises(RuntimeError, match="rate:=0: expected a positive number"):
        module.check_arguments(context)


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
    names = {ast.literal_eval(c.args[0]) for c in calls}
    expected = {"evaluate.launch.py": EVALUATE_ARGUMENTS, "segment.launch.py": LAUNCH_ARGUMENTS}
    assert names == expected[launch_file.name]


# ---- the launch files under the real LaunchService ---------------------------------------------

LAUNCH_RUNNER = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
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
TOKEN_VARIABLE = "LEDNET_LAUNCH_TEST_TOKEN"


class LaunchRun:
    """Run ``launch_file`` with ``arguments`` under LaunchService.run, for a ``with`` block.

    LaunchService.run is what `ros2 launch` runs; here in its own session as in a terminal, with
    the output going to a file.

    Every process it starts inherits a token in its environment: ``survivors()`` finds whatever
    is left of them, orphaned or not. On exit, anything still running is killed (and the test
    has already failed if it mattered).
    """

    def __init__(self, launch_file: Path, arguments, workdir: Path, env=None):
        self.token = uuid.uuid4().hex
        self.env = dict(env or process_environment(), **{TOKEN_VARIABLE: self.token})
        self.command = [sys.executable, "-c", LAUNCH_RUNNER, str(launch_file), *arguments]
        self.workdir = Path(workdir)
        self.log_path = self.workdir / f"launch_{self.token[:8]}.log"
        self.process = None

    def __enter__(self) -> "LaunchRun":
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command, cwd=self.workdir, env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ctrl_c(self, terminal: bool) -> None:
        """Press Ctrl-C.

        From a terminal, SIGINT goes to the whole foreground process group (the launch and every
        process it started); ``terminal=False`` signals the launch alone (kill -INT <its pid>).
        """
        if terminal:
            os.killpg(self.process.pid, signal.SIGINT)
        else:
            self.process.send_signal(signal.SIGINT)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the launch still runs after {timeout:.0f} s:\n"
                                 f"{self.output()}") from None

    def survivors(self) -> list[str]:
        """Return the command lines of the processes this launch started that still live."""
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if int(proc.name) == self.process.pid and self.process.poll() is None:
                    continue
                if self.token.encode() in (proc / "environ").read_bytes():
                    state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state != "Z":
                        found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ")
                                     .decode(errors="replace"))
            except (OSError, ValueError):
                continue
        return found

    def __exit__(self, *exc_info) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if self.token.encode() in (proc / "environ").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue
        self._log.close()


def finished_run(launch_file: Path, arguments, workdir, timeout: float = START_TIMEOUT):
    """Run a launch that must end by itself; return (exit status, output, survivors)."""
    with LaunchRun(launch_file, arguments, workdir) as run:
        returncode = run.wait(timeout)
        time.sleep(0.5)
        return returncode, run.output(), run.survivors()


def process_environment_of(parent_pid: int, marker: str) -> dict:
    """Return the environment of a child of ``parent_pid`` whose command line has ``marker``."""
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


def torch_params_file(tmp_path: Path) -> Path:
    """Write the shipped parameters with the torch engine and fp32 (no measuring at start)."""
    content = yaml.safe_load((CONFIG / "lednet.yaml").read_text())
    content["/**"]["ros__parameters"].update(engine="torch", precision="fp32")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def remote_parameters(probe, node: str, names: list[str], run: LaunchRun | None = None) -> list:
    """Get parameters ``names`` of ``node`` (started by ``run``, which must keep running)."""
    client = AsyncParameterClient(probe, node)
    deadline = time.monotonic() + START_TIMEOUT
    while not client.wait_for_services(timeout_sec=1.0):
        if run is not None and run.process.poll() is not None:
            raise AssertionError(f"the launch ended (status {run.process.returncode}) before "
                                 f"{node} was up:\n{run.output()}")
        assert time.monotonic() < deadline, f"{node} has no parameter services"
    future = client.get_parameters(names)
    wait_until(future.done, message=f"get_parameters of {node}")
    return [parameter_value_to_python(v) for v in future.result().values]


def test_launch_starts_the_node_with_parameters_remappings_and_profile(tmp_path, random_weights):
    """Run `ros2 launch lednet_ros segment.launch.py ...` as LaunchService does; check the graph.

    Node name, remapped inputs, parameters from params_file and arguments, the Fast DDS profile
    in the node's environment; Ctrl-C ends it cleanly.
    """
    ros_launch()
    share = installed_share()
    launch_file = share / "launch" / "segment.launch.py"
    params = yaml.safe_load((CONFIG / "lednet.yaml").read_text())
    params["/**"]["ros__parameters"].update(grid_rows=2, qos_depth=3, engine="torch")
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    arguments = ["namespace:=launch_test", "image:=/launch_cam/image_raw",
                 "camera_info:=/launch_cam/info", f"params_file:={params_file}",
                 f"weights:={random_weights}", "use_sim_time:=true"]
    env = process_environment()
    for name in PROFILE_VARIABLES:
        env.pop(name, None)  # the launch file must set them
    with ros_context() as context, LaunchRun(launch_file, arguments, tmp_path, env) as launched:
        probe = rclpy.create_node("launch_probe", context=context)
        with spinning(context, probe):
            wait_until(lambda: ("lednet_segmentation", "/launch_test")
                       in probe.get_node_names_and_namespaces(), timeout=START_TIMEOUT,
                       message="/launch_test/lednet_segmentation in the graph")
            def inputs():
                found = dict(probe.get_subscriber_names_and_types_by_node(NODE_NAME,
                                                                          "/launch_test"))
                return found if {"/launch_cam/image_raw", "/launch_cam/info"} <= set(found) \
                    else None

            subscribed = wait_until(inputs, timeout=START_TIMEOUT, message="its input topics")
            assert subscribed["/launch_cam/image_raw"] == ["sensor_msgs/msg/Image"]
            assert subscribed["/launch_cam/info"] == ["sensor_msgs/msg/CameraInfo"]
            values = remote_parameters(probe, f"/launch_test/{NODE_NAME}", [
                "grid_rows", "qos_depth", "weights", "use_sim_time", "overlay_alpha"], launched)
        assert values == [2, 3, str(random_weights), True, 0.5]
        node_env = process_environment_of(launched.process.pid, f"__node:={NODE_NAME}")
        profile = str(share / "config" / "fastdds_shm.xml")  # for Fast DDS 3.x and 2.x
        assert {name: node_env.get(name) for name in PROFILE_VARIABLES} == \
            dict.fromkeys(PROFILE_VARIABLES, profile)
        launched.ctrl_c(terminal=False)
        assert launched.wait(60) == 0, launched.output()
        assert launched.survivors() == []
    assert "Traceback" not in launched.output(), launched.output()


def test_rviz_without_rviz2_stops_the_launch_before_anything_starts(tmp_path):
    """Refuse rviz:=true without rviz2 before anything starts (issue 17, item 1).

    Exit status 1 with the reason, and no segmentation node is started, so none is left behind.
    """
    ros_launch()
    share = installed_share()
    if ros_package_installed("rviz2"):
        pytest.skip("rviz2 is installed here: rviz:=true would start it, not be refused")
    returncode, output, survivors = finished_run(share / "launch" / "segment.launch.py",
                                                 ["rviz:=true"], tmp_path, timeout=120)
    assert returncode == 1, output
    assert "rviz:=true needs the ROS package 'rviz2', which is not installed" in output, output
    assert "process started" not in output, output
    assert survivors == []


@pytest.mark.parametrize("launch_name", ["segment.launch.py", "evaluate.launch.py"])
def test_a_node_that_dies_at_start_up_fails_the_launch(launch_name, tmp_path):
    """Shut down with exit status 1 when a node exits with an error (item 2).

    Here the weights do not exist; nothing is left running and the evaluator writes no report.
    """
    ros_launch()
    share = installed_share()
    report = tmp_path / "report"
    returncode, output, survivors = finished_run(
        share / "launch" / launch_name,
        ["weights:=/nonexistent/lednet.safetensors", f"report_dir:={report}"], tmp_path)
    assert returncode == 1, output
    assert "/nonexistent/lednet.safetensors" in output, output
    assert re.search(r"(segmentation|evaluator)_node-\d+ exited with status 1", output), output
    assert survivors == []
    assert not report.exists()


@pytest.mark.parametrize("launch_name, argument, message", [
    ("segment.launch.py", "params_file:={missing}", "params_file:={missing}: no such file"),
    ("evaluate.launch.py", "params_file:={missing}", "params_file:={missing}: no such file"),
    ("evaluate.launch.py", "bag:={missing}", "bag:={missing}: no such bag"),
    ("evaluate.launch.py", "rate:=0", "rate:=0: expected a positive number"),
], ids=["segment-params_file", "evaluate-params_file", "evaluate-bag", "evaluate-rate"])
def test_a_refused_argument_stops_the_launch_before_anything_starts(launch_name, argument,
                                                                    message, tmp_path):
    """Refuse a params_file:= (item 3), bag:= that names nothing, or a bad rate:=.

    With the reason and exit status 1, before any process starts.
    """
    ros_launch()
    share = installed_share()
    missing = tmp_path / "no_such_file"
    argument, message = (text.format(missing=missing) for text in (argument, message))
    returncode, output, survivors = finished_run(share / "launch" / launch_name, [argument],
                                                 tmp_path, timeout=120)
    assert returncode == 1, output
    assert message in output, output
    assert "process started" not in output, output
    assert survivors == []


@pytest.mark.parametrize("terminal", [False, True], ids=["kill_INT_launch", "terminal_ctrl_c"])
def test_evaluation_honours_use_sim_time_and_ctrl_c_without_frames_fails(terminal, tmp_path,
                                                                         random_weights):
    """Honour use_sim_time:=false in both nodes; fail on Ctrl-C before any frame (items 4, 5).

    Stopped before a single frame was scored, the evaluator writes no report and the launch
    exits 1, quietly (no traceback) and with nothing left running.
    """
    ros_launch()
    share = installed_share()
    report = tmp_path / "report"
    arguments = ["use_sim_time:=false", "namespace:=eval_sim_time", f"weights:={random_weights}",
                 f"params_file:={torch_params_file(tmp_path)}", f"report_dir:={report}"]
    with ros_context() as context, LaunchRun(share / "launch" / "evaluate.launch.py", arguments,
                                             tmp_path) as run:
        probe = rclpy.create_node("sim_time_probe", context=context)
        with spinning(context, probe):
            values = [remote_parameters(probe, f"/eval_sim_time/{name}", ["use_sim_time"], run)
                      for name in (NODE_NAME, "lednet_evaluator")]
        assert values == [[False], [False]]
        run.ctrl_c(terminal)
        returncode = run.wait(120)
        time.sleep(0.5)
        output, survivors = run.output(), run.survivors()
    assert returncode == 1, output
    assert "no frame was scored" in output, output
    assert "evaluator_node-2 exited with status 1" in output, output
    assert "Traceback" not in output, output
    assert not report.exists()
    assert survivors == []


def write_labelled_bag(tmp_path: Path, frames: int = 5) -> Path:
    """Write a bag of ``frames`` 96x64 frames with ground truth (Cityscapes train ids).

    With this package's bag writer (`ros2 run lednet_ros write_bag`).
    """
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    images, labels = tmp_path / "frames", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for index in range(frames):
        cv2.imwrite(str(images / f"{index:03d}.png"),
                    rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
        cv2.imwrite(str(labels / f"{index:03d}.png"),
                    rng.integers(0, 19, (64, 96), dtype=np.uint8))
    bag = tmp_path / "bag"
    result = run_process([sys.executable, "-m", "lednet_ros.tools.write_bag", "--images",
                          str(images), "--labels", str(labels), "--out", str(bag), "--rate", "2"],
                         tmp_path)
    assert result.returncode == 0 and f"wrote {frames} frames" in result.stdout, (
        result.stdout + result.stderr)
    return bag


def test_evaluation_plays_the_bag_and_writes_a_report_of_the_matched_frames(tmp_path,
                                                                            random_weights):
    """Play bag:= and report its matched frames; the launch ends by itself with 0 (item 5).

    The player is `ros2 bag play` where rosbag2 is installed, else this package's bag_player.
    """
    ros_launch()
    share = installed_share()
    bag = write_labelled_bag(tmp_path)
    report = tmp_path / "report"
    returncode, output, survivors = finished_run(
        share / "launch" / "evaluate.launch.py",
        [f"bag:={bag}", "rate:=0.5", f"weights:={random_weights}",
         f"params_file:={torch_params_file(tmp_path)}", f"report_dir:={report}"],
        tmp_path, timeout=2 * START_TIMEOUT)
    assert returncode == 0, output
    player = "ros2-" if ros_package_installed("ros2bag") else "bag_player-"
    assert re.search(rf"\[{player}\d+\]: process has finished cleanly", output), output
    summary = json.loads((report / "report.json").read_text())
    frames = summary["frames"]
    assert frames["matched"] >= 1, frames
    assert frames["matched"] + frames["ground_truth_without_prediction"] == 5, frames
    assert summary["mean_iou"] is not None
    assert {"report.md", "confusion.png"} <= {p.name for p in report.iterdir()}
    assert survivors == []


def ros2_cli(*arguments: str, cwd) -> subprocess.CompletedProcess:
    """Run the `ros2` command line of this interpreter's ros2cli."""
    return run_process([sys.executable, "-c", "import sys; from ros2cli.cli import main; "
                        "sys.exit(main())", *arguments], cwd, timeout=120)


@pytest.mark.parametrize("launch_name", ["segment.launch.py", "evaluate.launch.py"])
def test_show_args_lists_each_launch_files_own_arguments(launch_name, tmp_path):
    """List exactly each file's own arguments with --show-args (item 6).

    For evaluate.launch.py: its own use_sim_time (default true), not the included file's.
    """
    ros_launch()
    installed_share()
    import_or_skip("ros2launch", f"ROS 2's ros2launch (`ros2 launch`) is not installed "
                                 f"({NOT_ON_PYPI})")
    result = ros2_cli("launch", "lednet_ros", launch_name, "--show-args", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = dict(re.findall(r"^    '([^']+)':\n(?:.*\n)*?\s+\(default: '([^']*)'\)",
                            result.stdout, re.MULTILINE))
    expected = {"segment.launch.py": LAUNCH_ARGUMENTS, "evaluate.launch.py": EVALUATE_ARGUMENTS}
    assert set(shown) == expected[launch_name], result.stdout
    sim_time = "true" if launch_name == "evaluate.launch.py" else "false"
    assert (shown["use_sim_time"], shown["rviz"]) == (sim_time, "false")
