"""The README's parameter table against the node's parameter specs.

nodes/segmentation_parameters and ros/ground_outputs: every parameter listed once, with its type,
default, range, whether it can change at run time, and its description, so the table cannot drift
from the code.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (the specs build ROS descriptors)")

from lednet_ros.nodes.segmentation_parameters import PARAMETERS  # noqa: E402
from lednet_ros.ros.ground_outputs import GROUND_PARAMETERS  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\| `([^`]+)` \| ([a-z\[\]]+) \| (.+?) \| (.+?) \| (read-only|runtime) \| "
                 r"(.+) \|$")
TYPES = {bool: "bool", int: "int", float: "float", str: "str"}


def readme_rows() -> dict[str, tuple[str, ...]]:
    text = README.read_text()
    table = text[text.index("### Parameters"):text.index("### Engine and precision")]
    rows = {}
    for line in table.splitlines():
        match = ROW.match(line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} listed twice"
            rows[match.group(1)] = match.groups()[1:]
    return rows


def shown(value) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{value or chr(39) * 2}`"
    return f"`{value}`"


def shown_range(spec) -> str:
    if spec.choices:
        return ", ".join(spec.choices)
    bounds = spec.integers or spec.floats
    if bounds is None:
        return "-"
    return "..".join("π" if abs(v) == math.pi and v > 0 else "-π" if abs(v) == math.pi
                     else str(v) for v in bounds)


def test_the_readme_lists_every_parameter_as_the_code_declares_it():
    specs = {**PARAMETERS, **GROUND_PARAMETERS}
    rows = readme_rows()
    listed = {name for name in rows if not name.startswith(("groups.", "costmap."))}
    assert listed - {"use_sim_time"} == set(specs), "README table and node parameters differ"
    for name, spec in specs.items():
        kind, default, bounds, change, description = rows[name]
        assert kind == TYPES[type(spec.default)], name
        assert default == shown(spec.default), name
        assert bounds == shown_range(spec), name
        assert change == ("read-only" if spec.read_only else "runtime"), name
        assert description == spec.description, name


def test_every_parameter_set_in_docs_launch_files_and_tools_is_declared():
    """Each `-p NAME:=` / `--param NAME:=` shown names a parameter a node declares.

    In the README, docs, launch files and tools; use_sim_time is every node's.
    """
    from lednet_ros.nodes.camera_publisher import PARAMETERS as CAMERA
    from lednet_ros.nodes.evaluator_node import PARAMETERS as EVALUATOR

    declared = {*PARAMETERS, *GROUND_PARAMETERS, *CAMERA, *EVALUATOR, "use_sim_time"}
    root = README.parent
    files = [README, *root.glob("docs/*.md"), *root.glob("launch/*.py"),
             *root.glob("lednet_ros/tools/*.py")]
    used = {(path.name, name) for path in files
            for name in re.findall(r"(?:-p|--param) ([a-z_.]+):=", path.read_text())}
    assert used, "no parameter set anywhere: the pattern is wrong"
    unknown = sorted((path, name) for path, name in used
                     if name not in declared and name != "name")  # NAME:=VALUE in help texts
    assert not unknown, unknown
