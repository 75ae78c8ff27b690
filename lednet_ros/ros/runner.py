"""Running a node as an executable: `--help` from its parameter table, a quiet Ctrl-C.

Every node's ``main`` is ``return run_node(NodeClass, PARAMETERS, __doc__, args)``.
"""

from __future__ import annotations

import os
import signal
import sys

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from lednet_ros.ros.parameters import ConfigurationError, Spec


# What the nodes use of rclpy that ROS 2 Humble's lacks (it came with Iron).
NEEDED_RCLPY = {"add_post_set_parameters_callback": "parameter changes applied after they are set"}


def unsupported_rclpy(node_base=Node) -> str | None:
    """Say what ``node_base`` (rclpy's Node) lacks of NEEDED_RCLPY, or None when it has it all."""
    missing = [f"Node.{name} ({use})" for name, use in NEEDED_RCLPY.items()
               if not hasattr(node_base, name)]
    if not missing:
        return None
    distro = os.environ.get("ROS_DISTRO") or "this ROS 2"
    return (f"cannot start on ROS 2 {distro}: its rclpy lacks {', '.join(missing)}, which came "
            "with ROS 2 Iron; use Jazzy (LTS) or Kilted")


def usage(executable: str, summary: str, specs: dict[str, Spec]) -> str:
    """Usage text: what the node does and each parameter with type, default and constraints."""
    lines = [f"usage: ros2 run lednet_ros {executable} [--ros-args -p NAME:=VALUE ...]", "",
             summary.strip().splitlines()[0], "", "parameters:"]
    for name, spec in specs.items():
        limits = spec.limits()
        extra = f" [{'; '.join(limits)}]" if limits else ""
        default = repr(list(spec.default) if isinstance(spec.default, tuple) else spec.default)
        if spec.by_weights:
            default = (f"by the weights' {spec.by_weights}"
                       + (f"; packaged weights {default}" if spec.default else ""))
        lines.append(f"  {name} ({spec.type_name}, default {default}){extra}")
        lines.append(f"      {spec.description}")
    return "\n".join(lines)


def refuse_start(node, error: Exception) -> None:
    """End a node's constructor after ``error``: ConfigurationError, logged as fatal.

    Where the context went away meanwhile (Ctrl-C during start-up broke a step), raise
    ExternalShutdownException instead: a shutdown, not a configuration error.
    """
    stopped = not node.context.ok()
    if not stopped:
        node.get_logger().fatal(f"cannot start: {error}")
    node.destroy_node()
    if stopped:
        raise ExternalShutdownException()
    raise ConfigurationError(str(error))


def wants_help(argv: list[str]) -> bool:
    """-h/--help among the arguments before --ros-args."""
    own = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    return "-h" in own or "--help" in own


def run_node(node_class, specs: dict[str, Spec], summary: str, args=None,
             executable: str = "") -> int:
    """Build ``node_class()`` and spin it until Ctrl-C, shutdown or its ``done`` turns true.

    ``done`` counts only for nodes with that attribute.
    After the node is destroyed (so nothing more goes to /rosout), its ``finish()`` runs if it
    has one and gives the exit status. Returns 0 after a shutdown (also one during start-up:
    not an error), 1 when the node refused its configuration (it logged why) or this rclpy lacks
    what the nodes use (unsupported_rclpy). ``--help`` prints the usage instead.
    """
    argv = sys.argv if args is None else list(args)
    if wants_help(argv):
        print(usage(executable or node_class.__name__, summary, specs))
        return 0
    unsupported = unsupported_rclpy()
    if unsupported:
        print(f"{executable or node_class.__name__}: {unsupported}", file=sys.stderr)
        return 1
    rclpy.init(args=argv)
    node = None
    try:
        node = node_class()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not getattr(node, "done", False):
            executor.spin_once(timeout_sec=0.1)
    except ConfigurationError:
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # stopped while starting: the context went away under the constructor; not an error
    finally:
        # A terminal's Ctrl-C reaches every process of the group and `ros2 launch` sends its
        # own SIGINT after it: a second one must not break the teardown or the final report.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    finish = getattr(node, "finish", None)
    return finish() if finish is not None else 0
