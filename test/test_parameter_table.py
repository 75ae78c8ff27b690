"""The nodes' parameter tables against what users read: docs/parameters.md, README, --help, -p.

ros/segmentation_parameters.PARAMETERS is the one table of the segmentation node; the docs are
made from it (tools/parameter_docs.py), the README's short table must repeat its rows exactly,
and every `-p NAME:=` shown anywhere must name a parameter a node declares.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (the specs build ROS descriptors)")

from lednet_ros.nodes.camera_publisher import PARAMETERS as CAMERA  # noqa: E402
from lednet_ros.nodes.evaluator_node import PARAMETERS as EVALUATOR  # noqa: E402
from lednet_ros.ros.parameters import Spec, markdown_table  # noqa: E402
from lednet_ros.ros.runner import unsupported_rclpy, usage  # noqa: E402
from lednet_ros.ros.segmentation_parameters import PARAMETERS  # noqa: E402
from lednet_ros.tools.parameter_docs import document  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def table_rows(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([^`]+)` \|", line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} listed twice"
            rows[match.group(1)] = line
    return rows


def test_docs_parameters_is_made_from_the_tables():
    """docs/parameters.md is what tools/parameter_docs writes: no row can drift from the code."""
    written = (REPO / "docs" / "parameters.md").read_text()
    assert written == document(), (
        "docs/parameters.md differs from the parameter tables: run "
        "`python -m lednet_ros.tools.parameter_docs`")
    sections = written.split("\n## ")[1:]
    assert len(sections) == 3
    for section, specs in zip(sections, (PARAMETERS, CAMERA, EVALUATOR), strict=True):
        assert list(table_rows(section)) == list(specs), section.splitlines()[0]


def test_the_table_shows_what_a_changed_default_or_range_would_change():
    """The made table follows the specs (so the equality above is a real check)."""
    spec = PARAMETERS["overlay_alpha"]
    before = markdown_table({"overlay_alpha": spec})
    after = markdown_table({"overlay_alpha": Spec(0.7, spec.description, floats=(0.0, 0.9))})
    assert "`0.5`" in before and "0.0..1.0" in before
    assert "`0.7`" in after and "0.0..0.9" in after


def test_the_readme_rows_are_the_tables_rows():
    text = README.read_text()
    section = text[text.index("### Parameters"):text.index("### Engine and precision")]
    rows = table_rows(section)
    assert len(rows) >= 5, "the README's parameter section lost its table"
    made = table_rows(markdown_table(PARAMETERS))
    for name, row in rows.items():
        assert row == made.get(name), f"README row of {name} differs from the table"


def test_help_lists_every_parameter_of_the_table():
    text = usage("segmentation_node", "The node.", PARAMETERS)
    for name, spec in PARAMETERS.items():
        assert f"  {name} ({spec.type_name}, default " in text
        assert spec.description in text


def launch_arguments() -> set[str]:
    return {name for path in REPO.glob("launch/*.py")
            for name in re.findall(r'DeclareLaunchArgument\(\s*"(\w+)"', path.read_text())}


def is_declared(name: str) -> bool:
    """Say whether a node declares ``name`` (use_sim_time is every node's)."""
    return (name in {*PARAMETERS, *CAMERA, *EVALUATOR, "use_sim_time"}
            or re.fullmatch(r"groups\.classes\.[A-Za-z]\w*", name) is not None)


SETTINGS = {  # how a parameter is set in text: -p/--param (also as list items), `name:=value`
    "-p": r'(?:-p|--param)"?,?\s+(?:f?")?([A-Za-z_][\w.]*):=',
    "backticks": r"`([A-Za-z_][\w.]*):=",
    "f-string": r'f"([A-Za-z_][\w.]*):=\{',
}


def test_every_parameter_set_in_docs_launch_files_and_tools_is_declared():
    """Each parameter a README, docs, launch file, tool or CI script sets is declared.

    Launch arguments (`rviz:=true`), remappings (`__ns:=`) and the NAME:=VALUE of help texts
    aside; the demo's parameters are checked from its own table.
    """
    from lednet_ros.tools.demo import ground_parameters

    files = [README, *REPO.glob("docs/*.md"), *REPO.glob("launch/*.py"),
             *REPO.glob("lednet_ros/tools/*.py"), *(p for p in REPO.glob(".ci/*") if p.is_file())]
    skipped = launch_arguments() | {"NAME", "name"}
    assert {"rviz", "image", "params_file"} <= skipped
    used = set()
    for form, pattern in SETTINGS.items():
        found = {(path.name, name) for path in files
                 for name in re.findall(pattern, path.read_text())
                 if not name.startswith("__") and name not in skipped}
        assert found, f"no parameter set as {form} anywhere: the pattern is wrong"
        used |= found
    used |= {("demo.py", name) for name in ground_parameters(None)}
    assert ("demo.py", "groups.classes.obstacle") in used
    unknown = sorted((path, name) for path, name in used if not is_declared(name))
    assert not unknown, unknown

def test_the_tables_defaults_are_the_cores_default_settings():
    """The node with no parameters set runs what the core's settings default to."""
    from lednet_ros.core.ground.settings import GroundSettings
    from lednet_ros.core.runtime.pipeline import FrameSettings
    from lednet_ros.ros.segmentation_parameters import frame_settings, ground_settings

    defaults = {name: spec.default for name, spec in PARAMETERS.items()}
    assert frame_settings(defaults) == FrameSettings()
    assert ground_settings(defaults) == GroundSettings()


def test_every_ground_setting_is_a_parameter_and_every_ground_parameter_a_setting():
    """No GroundSettings field can fall back to its default for want of a parameter."""
    from dataclasses import fields

    from lednet_ros.core.ground.camera_geometry import CameraPose
    from lednet_ros.core.ground.mapping import GridSpec
    from lednet_ros.core.ground.settings import GroundSettings

    own = {f"ground.{f.name}" for f in fields(GroundSettings)} - {"ground.pose", "ground.grid"}
    expected = (own | {f"ground.camera_{f.name}" for f in fields(CameraPose)}
                | {f"ground.{f.name}" for f in fields(GridSpec)})
    assert {name for name in PARAMETERS if name.startswith("ground.")} == expected


def test_an_rclpy_without_what_the_nodes_use_is_named_before_anything_starts(monkeypatch):
    """Humble's rclpy Node has no add_post_set_parameters_callback: say so, not a traceback."""
    assert unsupported_rclpy() is None  # this rclpy (Jazzy or Kilted)

    class HumbleLikeNode:  # the callbacks Humble's rclpy.node.Node has
        add_on_set_parameters_callback = None

    monkeypatch.setenv("ROS_DISTRO", "humble")
    message = unsupported_rclpy(HumbleLikeNode)
    assert message.startswith("cannot start on ROS 2 humble: its rclpy lacks "
                              "Node.add_post_set_parameters_callback")
    assert "Jazzy" in message and "Kilted" in message
