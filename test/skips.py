"""Module-level skips shared by the test files, each naming what is missing."""

from __future__ import annotations

import importlib

import pytest


def skip_without_built_messages() -> None:
    """Skip the calling test module unless rclpy and our built messages (lednet_ros.msg) import."""
    pytest.importorskip("rclpy", reason="rclpy is not installed")
    try:
        importlib.import_module("lednet_ros.msg")
    except ImportError as exc:
        pytest.skip(f"lednet_ros.msg not importable ({exc}): build with colcon and source "
                    "install/setup.bash", allow_module_level=True)
