"""Write docs/parameters.md: every node's parameters, from the tables the nodes declare.

    python -m lednet_ros.tools.parameter_docs [--output docs/parameters.md]

test/test_parameter_table.py fails when the file differs from what this writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lednet_ros.core.ground.class_groups import DEFAULT_GROUPS
from lednet_ros.nodes import camera_publisher, evaluator_node
from lednet_ros.ros.parameters import markdown_table
from lednet_ros.ros.segmentation_parameters import PARAMETERS

DEFAULT_OUTPUT = Path(__file__).resolve().parents[2] / "docs" / "parameters.md"
NODES = (
    ("segmentation_node", "lednet_segmentation", PARAMETERS),
    ("camera_publisher", "camera_publisher", camera_publisher.PARAMETERS),
    ("evaluator_node", "lednet_evaluator", evaluator_node.PARAMETERS),
)
INTRODUCTION = """\
# Parameters

Made by `python -m lednet_ros.tools.parameter_docs` from the tables the nodes declare
(`lednet_ros/ros/segmentation_parameters.py` for the segmentation node); a test fails when this
file and the code differ. `ros2 run lednet_ros <executable> --help` prints the same.

Every parameter has a descriptor (description, range, allowed values): `ros2 param describe`
shows it. Read-only parameters need a restart; the others change at run time (`ros2 param set`).
A value the node cannot run with stops it at start-up, and a runtime change it cannot apply is
refused, each with a message naming the value. A parameter given that the node does not have is
reported as a warning; one under an earlier release's name (`groups.obstacles`,
`costmap.drivable`, `groups.<a declared group>`) stops the node, naming the new one.
`use_sim_time` is every node's (stamps and latency on /clock, for bags played with `--clock`).

`config/lednet.yaml` lists the segmentation node's parameters with their defaults. Its class
groups (`groups.*`) default to the weights' class set: the CamVid ones below for the packaged
weights, {cityscapes} for Cityscapes weights, none for other class sets. A group naming a class
the weights lack stops the node with the list of valid names. User-chosen group names appear only
under `groups.classes.`, so they cannot collide with the fixed names.
"""


def document() -> str:
    """Return the Markdown text of docs/parameters.md."""
    cityscapes = DEFAULT_GROUPS["cityscapes"]["classes"]
    parts = [INTRODUCTION.format(cityscapes=", ".join(
        f"{name} `[{', '.join(classes)}]`" for name, classes in cityscapes.items()))]
    for executable, node_name, specs in NODES:
        parts.append(f"\n## {executable} (node `{node_name}`)\n\n{markdown_table(specs)}")
    return "".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    args.output.write_text(document())
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
