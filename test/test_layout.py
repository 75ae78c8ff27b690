"""The package's shape: a ROS-free core, small modules, a thin node; no ROS needed to run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lednet_ros"
ROS_MODULES = {"rclpy", "launch", "launch_ros", "ament_index_python", "rosidl_runtime_py",
               "tf2_ros", "cv_bridge", "message_filters", "rosgraph_msgs"}
ROS_SUFFIXES = ("_msgs", "_srvs", "_interfaces")
MAX_MODULE_LINES = 420
MAX_NODE_LINES = 235


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (functions included), as written."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def is_ros(module: str) -> bool:
    top = module.split(".")[0]
    return (top in ROS_MODULES or top.endswith(ROS_SUFFIXES)
            or module == "lednet_ros.msg" or module.startswith("lednet_ros.msg."))


CORE = PACKAGE / "core"
CORE_MODULES = sorted(CORE.rglob("*.py"))
CORE_SUBPACKAGES = {"inference", "runtime", "ground", "data", "evaluation", "adaptation"}


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_modules_import_no_ros(path):
    ros = sorted(m for m in imported_modules(path) if is_ros(m))
    assert not ros, f"{path.relative_to(PACKAGE)} imports {ros}: core must run without ROS"


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_modules_hold_no_command_line(path):
    """Command lines live in tools/ and training/; core is a library."""
    assert "argparse" not in imported_modules(path), f"{path.relative_to(PACKAGE)}: CLI in core"


def test_core_is_split_by_subsystem():
    """core/ holds subpackages only, one per subsystem, each with modules of its own."""
    loose = sorted(p.name for p in CORE.glob("*.py") if p.name != "__init__.py")
    assert not loose, f"modules directly in core/: {loose}; put each in its subsystem"
    found = {p.name for p in CORE.iterdir() if (p / "__init__.py").is_file()}
    assert found == CORE_SUBPACKAGES
    for name in found:
        assert len(list((CORE / name).glob("*.py"))) >= 3, name  # __init__ + 2 or more


def test_core_walk_sees_every_module_and_would_catch_ros(tmp_path):
    """The check itself: it reads nested imports and the generated messages."""
    assert len(CORE_MODULES) >= 10
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from sensor_msgs.msg import Image\n"
                      "from lednet_ros.msg import ClassInfo\nimport numpy\n")
    assert sorted(m for m in imported_modules(sample) if is_ros(m)) == [
        "lednet_ros.msg", "lednet_ros.msg.ClassInfo", "sensor_msgs.msg", "sensor_msgs.msg.Image"]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(
    p.relative_to(PACKAGE)))
def test_no_module_is_too_long(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines"


def test_the_segmentation_node_reads_as_wiring():
    node = PACKAGE / "nodes" / "segmentation_node.py"
    assert len(node.read_text().splitlines()) <= MAX_NODE_LINES
    # the per-frame work is the core pipeline's, not the node's
    assert "lednet_ros.core.runtime.pipeline" in imported_modules(node)
    assert not {"torch", "cv2"} & imported_modules(node)


def test_subpackages_by_role():
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} == {
        "core", "ros", "nodes", "tools"}
    for folder in ("nodes", "tools"):
        for path in (PACKAGE / folder).glob("*.py"):
            if path.name != "__init__.py" and folder == "nodes":
                assert "def main(" in path.read_text() or path.stem.endswith("_parameters")
