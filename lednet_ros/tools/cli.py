"""What the tools that start ROS processes share: finding the Fast DDS profile, and its names."""

from __future__ import annotations

from pathlib import Path

PROFILE_NAME = "fastdds_shm.xml"
# The environment variables a Fast DDS XML profile is read from: FASTDDS_DEFAULT_PROFILES_FILE by
# Fast DDS 3.x (Kilted), FASTRTPS_DEFAULT_PROFILES_FILE by Fast DDS 2.x (Jazzy, Humble). Set both.
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def profile_environment(path) -> dict[str, str]:
    """Return the environment that makes every Fast DDS version read the profile at ``path``."""
    return dict.fromkeys(PROFILE_VARIABLES, str(path))


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
