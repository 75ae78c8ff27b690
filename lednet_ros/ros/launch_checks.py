"""Checks shared by the launch files: fail loudly, before anything starts, and on a node's error.

Imports ROS 2's `launch` (not on PyPI): only the launch files use this module.
"""

from __future__ import annotations

import os

from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from launch.actions import RegisterEventHandler
from launch.event_handlers import OnProcessExit


class LaunchConfigurationError(RuntimeError):
    """A launch argument that cannot work; `ros2 launch` prints it and exits with 1."""


def require_file(path: str, argument: str) -> str:
    """``path`` when it is a file, else LaunchConfigurationError naming the argument."""
    if not os.path.isfile(path):
        raise LaunchConfigurationError(f"{argument}:={path}: no such file")
    return path


def package_installed(name: str) -> bool:
    """True when the ROS package ``name`` is on AMENT_PREFIX_PATH."""
    try:
        get_package_prefix(name)
    except PackageNotFoundError:
        return False
    return True


def require_package(name: str, needed_for: str) -> None:
    """LaunchConfigurationError naming the missing package and what needed it."""
    if not package_installed(name):
        raise LaunchConfigurationError(
            f"{needed_for} needs the ROS package '{name}', which is not installed "
            f"(e.g. apt install ros-$ROS_DISTRO-{name.replace('_', '-')})")


def _raise_on_error(event, context):
    if event.returncode not in (0, None) and not context.is_shutdown:
        raise LaunchConfigurationError(
            f"{event.action.name} exited with status {event.returncode} (its log is above); "
            "shutting down")


def fail_when_it_fails(action) -> RegisterEventHandler:
    """An event handler that shuts the launch down with exit status 1 when ``action`` exits
    with an error (launch turns an exception in a handler into a non-zero exit)."""
    return RegisterEventHandler(OnProcessExit(target_action=action, on_exit=_raise_on_error))
