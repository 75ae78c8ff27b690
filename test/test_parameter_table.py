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
from lednet_ros.ros.runner import usage  # noqa: E402
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


def test_every_parameter_set_in_docs_launch_files_and_tools_is_declared():
    """Each `-p NAME:=` / `--param NAME:=` shown names a parameter a node declares.

    In the README, docs, launch files and tools; use_sim_time is every node's;
    groups.classes.<name> stands for one parameter per group name.
    """
    declared = {*PARAMETERS, *CAMERA, *EVALUATOR, "use_sim_time"}
    files = [README, *REPO.glob("docs/*.md"), *REPO.glob("launch/*.py"),
             *REPO.glob("lednet_ros/tools/*.py")]
    used = {(path.name, name) for path in files
            for name in re.findall(r"(?:-p|--param) ([a-z_.]+):=", path.read_text())}
    assert used, "no parameter set anywhere: the pattern is wrong"
    unknown = sorted((path, name) for path, name in used
                     if name not in declared and name != "name"  # NAME:=VALUE in help texts
                     and not re.fullmatch(r"groups\.classes\.[A-Za-z]\w*", name))
    assert not unknown, unknown


def test_the_tables_defaults_are_the_cores_default_settings():
    """The node with no parameters set runs what the core's settings default to."""
    from lednet_ros.core.ground.settings import GroundSettings
    from lednet_ros.core.runtime.pipeline import FrameSettings
    from lednet_ros.ros.segmentation_parameters import frame_settings, ground_settings

    defaults = {name: spec.default for name, spec in PARAMETERS.items()}
    assert frame_settings(defaults) == FrameSettings()
    assert ground_settings(defaults) == GroundSettings()
