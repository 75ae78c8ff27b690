"""Module-level skips shared by the test files, each naming what is missing."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def skip_without_built_messages() -> None:
    """Skip the calling test module unless rclpy and our built messages (lednet_ros.msg) import."""
    pytest.importorskip("rclpy", reason="rclpy is not installed")
    try:
        importlib.import_module("lednet_ros.msg")
    except ImportError as exc:
        pytest.skip(f"lednet_ros.msg not importable ({exc}): build with colcon and source "
                    "install/setup.bash", allow_module_level=True)


def install_prefix() -> Path:
    """Return the prefix holding this package; skip the test where there is none.

    From AMENT_PREFIX_PATH, else the running lane's <repo>/.lanes/<lane>/install/lednet_ros.
    """
    candidates = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    lane = os.environ.get("LEDNET_LANE", "jazzy")
    candidates.append(REPO / ".lanes" / lane / "install" / "lednet_ros")
    for prefix in candidates:
        if (prefix / "share" / "lednet_ros" / "package.xml").is_file():
            return prefix
    pytest.skip("no colcon install space of lednet_ros (run .ci/setup, source .ci/env)")
