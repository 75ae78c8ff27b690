"""What the tools that start ROS processes share: finding the Fast DDS profile."""

from __future__ import annotations

from pathlib import Path

PROFILE_NAME = "fastdds_shm.xml"


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
