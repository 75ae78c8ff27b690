"""Shared fixtures: paths of ../shared data (skipping where absent), ROS isolation, small weights.

ROS isolation is set for the whole session before anything imports rclpy: a unique ROS_DOMAIN_ID,
discovery limited to this machine, logs under a temporary directory. Processes started by tests
inherit it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ["ROS_DOMAIN_ID"] = str(10 + os.getpid() % 80)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="lednet_ros_test_logs_"))
_profile = REPO / "config" / "fastdds_shm.xml"
if _profile.is_file():
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(_profile))


def _shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.is_dir():
        pytest.skip(f"{path} is absent (real data lives in ../shared/data; it is never committed)")
    return path


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    return _shared("camvid")


@pytest.fixture(scope="session")
def cityscapes_root() -> Path:
    return _shared("cityscapes_mini")


@pytest.fixture(scope="session")
def cityscapes_frame(cityscapes_root) -> Path:
    """A real 2048x1024 Cityscapes frame with official labelIds."""
    return (cityscapes_root / "leftImg8bit" / "train" / "aachen"
            / "aachen_000000_000019_leftImg8bit.png")


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    """A randomly initialised 19-class Cityscapes LEDNet saved with full metadata (small input)."""
    import torch

    from lednet_ros.checkpoint import WeightsMetadata, save_weights
    from lednet_ros.labels import CITYSCAPES
    from lednet_ros.model import LEDNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random_cityscapes.safetensors"
    meta = WeightsMetadata.from_class_set(CITYSCAPES, input_size=[256, 128],
                                          recipe={"note": "random init for tests"})
    return save_weights(path, LEDNet(19), meta)
