"""Helpers shared by the command-line tools (and training): sizes, the Fast DDS profile."""

from __future__ import annotations

import argparse
from pathlib import Path

PROFILE_NAME = "fastdds_shm.xml"


def parse_size(text: str) -> tuple[int, int]:
    """'1024x512' -> (1024, 512), width x height; argparse's error for anything else."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size {text!r} is not WIDTHxHEIGHT, e.g. 1024x512") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return width, height


def fastdds_profile() -> Path | None:
    """config/fastdds_shm.xml of the installed package, else of the source tree, else None."""
    candidates = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            candidates.append(Path(get_package_share_directory("lednet_ros")) / "config")
        except PackageNotFoundError:
            pass
    except ImportError:  # no ament index: a pip install without ROS
        pass
    candidates.append(Path(__file__).resolve().parents[2] / "config")
    return next((folder / PROFILE_NAME for folder in candidates
                 if (folder / PROFILE_NAME).is_file()), None)
