"""What the launch files share: loud failures, and the Fast DDS profile of what they start.

Failures stop a launch before anything starts, or when a node exits with an error.

Imports ROS 2's `launch` (not on PyPI): only the launch files use this module.
"""

from __future__ import annotations

import os
import signal

from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from launch.actions import OpaqueFunction, RegisterEventHandler, SetEnvironmentVariable
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration

from lednet_ros.tools.cli import PROFILE_VARIABLES


class LaunchConfigurationError(RuntimeError):
    """A launch argument that cannot work; `ros2 launch` prints it and exits with 1."""


def require_file(path: str, argument: str) -> str:
    """``path`` when it is a file, else LaunchConfigurationError naming the argument."""
    if not os.path.isfile(path):
        raise LaunchConfigurationError(f"{argument}:={path}: no such file")
    return path


def package_installed(name: str) -> bool:
    """Tell whether the ROS package ``name`` is on AMENT_PREFIX_PATH."""
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


# Exit statuses of a process ended by the signal launch sends it at shutdown (SIGINT, then SIGTERM
# and SIGKILL): negative from a signal it did not handle, 128 + the signal from one it did.
STOPPED_AT_SHUTDOWN = {-signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL,
                       128 + signal.SIGINT, 128 + signal.SIGTERM}


def exit_error(name: str, returncode: int | None, *, shutting_down: bool,
               status_is_result: bool = False) -> str | None:
    """Why the exit of process ``name`` with ``returncode`` fails the launch, or None.

    0 never does. During shutdown, being stopped by launch's signal (STOPPED_AT_SHUTDOWN) does
    not either, except for a process whose exit status is its result (``status_is_result``: the
    evaluator, whose report is written only when it ends on its own terms).
    """
    if returncode in (0, None):
        return None
    if shutting_down and not status_is_result and returncode in STOPPED_AT_SHUTDOWN:
        return None
    why = (f"killed by signal {signal.Signals(-returncode).name}" if returncode < 0
           and -returncode in signal.valid_signals() else f"exited with status {returncode}")
    return f"{name} {why} (its log is above)" + ("" if shutting_down else "; shutting down")


def fail_when_it_fails(action, *, status_is_result: bool = False) -> RegisterEventHandler:
    """Return an event handler failing the launch when ``action`` exits with an error.

    The launch then shuts down and `ros2 launch` exits with 1 (launch turns an exception in a
    handler into exit status 1, also during shutdown). See exit_error for what is an error.
    """
    def on_exit(event, context):
        error = exit_error(event.action.name, event.returncode,
                           shutting_down=context.is_shutdown, status_is_result=status_is_result)
        if error is not None:
            raise LaunchConfigurationError(error)

    return RegisterEventHandler(OnProcessExit(target_action=action, on_exit=on_exit))


def fastdds_profile_for_all(argument: str) -> OpaqueFunction:
    """Set the launch argument ``argument``'s profile file for every process started after it.

    Under both names (tools.cli.PROFILE_VARIABLES: Fast DDS 3.x and 2.x read different ones);
    an empty value leaves the environment as it is.
    """
    def set_profile(context):
        path = LaunchConfiguration(argument).perform(context)
        return [SetEnvironmentVariable(name, path) for name in PROFILE_VARIABLES] if path else []

    return OpaqueFunction(function=set_profile)
