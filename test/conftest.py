"""Shared fixtures: ../shared data (skipping where absent), ROS isolation, weights, node rigs.

A ROS context per module (``context``) and segmentation-node rigs (``rig_factory``, see
test/node_rig.py) are here too; rclpy is imported only by the tests that ask for them.

ROS isolation is set for the whole session before anything imports rclpy: a unique ROS_DOMAIN_ID,
discovery limited to this machine, logs under a temporary directory. Processes started by tests
inherit it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ["ROS_DOMAIN_ID"] = str(10 + os.getpid() % 80)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# Temporary folders this session makes (not those given in the environment): removed when every
# test passed, kept and named when one failed (the nodes' logs are what a failure is read from).
_MADE: dict[str, str] = {}
for _variable, _prefix in (("ROS_LOG_DIR", "lednet_ros_test_logs_"),
                           # ONNX graphs exported by the tests (core.inference.onnx_cache) stay
                           # out of the user's ~/.cache
                           ("LEDNET_ROS_CACHE", "lednet_ros_test_cache_")):
    if _variable not in os.environ:
        os.environ[_variable] = _MADE[_variable] = tempfile.mkdtemp(prefix=_prefix)
_profile = REPO / "config" / "fastdds_shm.xml"
if _profile.is_file():  # under both names: Fast DDS 3.x (Kilted) and 2.x (Jazzy) read one each
    for _name in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        os.environ.setdefault(_name, str(_profile))


def pytest_sessionfinish(session, exitstatus):
    """Remove the session's temporary folders after a green run; name them after a red one."""
    for variable, path in _MADE.items():
        if exitstatus == 0:
            shutil.rmtree(path, ignore_errors=True)
        else:
            print(f"\n{variable} kept for reading: {path}")


def _shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.is_dir():
        pytest.skip(f"{path} is absent (real data lives in ../shared/data; it is never committed)")
    return path


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    return _shared("camvid")


@pytest.fixture(scope="module")
def frames(request) -> list:
    """Three CamVid test frames (480x360), or drawn road scenes where ../shared is absent."""
    from drawn_scenes import road_scene
    from lednet_ros.core.data.datasets import read_rgb

    try:
        root = request.getfixturevalue("camvid_root")
    except pytest.skip.Exception:
        return [road_scene(seed=seed) for seed in range(3)]
    paths = sorted((root / "test").glob("*.png"))
    return [read_rgb(paths[i * (len(paths) - 1) // 2]) for i in range(3)]


@pytest.fixture(scope="session")
def run6_weights() -> Path:
    """Return run 6's weights (committed): bound to CamVid's camera, for the adaptation tests."""
    return (REPO / "training" / "checkpoints" / "camvid_v4_lovasz"
            / "lednet_camvid_run6.safetensors")


@pytest.fixture(scope="session")
def cityscapes_root() -> Path:
    return _shared("cityscapes_mini")


@pytest.fixture(scope="session")
def cityscapes_frame(cityscapes_root) -> Path:
    """Return the path of a real 2048x1024 Cityscapes frame with official labelIds."""
    return (cityscapes_root / "leftImg8bit" / "train" / "aachen"
            / "aachen_000000_000019_leftImg8bit.png")


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    """Save a randomly initialised 19-class Cityscapes LEDNet; return the weights file.

    The weights carry full metadata, with a small input size.
    """
    import torch

    from lednet_ros.core.data.classes import CITYSCAPES
    from lednet_ros.core.inference.checkpoint import WeightsMetadata, save_weights
    from lednet_ros.core.inference.model import LEDNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random_cityscapes.safetensors"
    meta = WeightsMetadata.from_class_set(CITYSCAPES, input_size=[256, 128],
                                          recipe={"note": "random init for tests"})
    return save_weights(path, LEDNet(19), meta)


@pytest.fixture(scope="session")
def small_shipped_segmenter():
    """Load the shipped CamVid weights at the made frames' small input size (torch engine).

    Their outputs follow the input (a random model labels every pixel alike, so it could not
    tell frames apart).
    """
    from lednet_ros.core.inference.segmenter import Segmenter

    from drawn_scenes import MADE_SIZE

    return Segmenter.from_weights(None, engine="torch", input_size=MADE_SIZE)


# Cityscapes labelIds of the tiny tree's classes and their colours: road, vegetation, sky, car;
# 0 is void (unlabeled). Each 8x8 block of an image is one class, coloured with noise: a learnable
# signal.
TINY_CLASS_COLORS = {7: (128, 64, 128), 21: (107, 142, 35), 23: (70, 130, 180), 26: (0, 0, 142),
                     0: (0, 0, 0)}


def write_tiny_cityscapes(root: Path, train: int = 8, val: int = 2, size=(64, 32), seed: int = 0,
                          train_ids_every: int = 3) -> Path:
    """Write a Cityscapes-layout tree of ``size`` (width, height) frames with gtFine labelIds.

    Every ``train_ids_every``-th frame also has a *_labelTrainIds.png (as the official scripts
    write).
    """
    import cv2
    import numpy as np

    from lednet_ros.core.data.classes import cityscapes_label_id_lut

    rng = np.random.default_rng(seed)
    ids = np.array(list(TINY_CLASS_COLORS), dtype=np.uint8)
    colors = np.array(list(TINY_CLASS_COLORS.values()), dtype=np.float64)
    width, height = size
    for split, count, city in (("train", train, "tinyville"), ("val", val, "smallton")):
        (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        for frame in range(count):
            blocks = rng.choice(len(ids), size=(height // 8, width // 8), p=[.3, .3, .2, .15, .05])
            choice = np.kron(blocks, np.ones((8, 8), dtype=np.int64))
            label_ids = ids[choice]
            rgb = np.clip(colors[choice] + rng.normal(0, 20, (height, width, 3)), 0, 255)
            stem = f"{city}_{frame:06d}_000019"
            cv2.imwrite(str(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"),
                        cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2BGR))
            gt = root / "gtFine" / split / city
            cv2.imwrite(str(gt / f"{stem}_gtFine_labelIds.png"), label_ids)
            if frame % train_ids_every == 0:
                train_ids = cityscapes_label_id_lut()[label_ids]
                cv2.imwrite(str(gt / f"{stem}_gtFine_labelTrainIds.png"), train_ids)
    return root


@pytest.fixture(scope="session")
def tiny_cityscapes(tmp_path_factory) -> Path:
    """Return a tiny Cityscapes tree (8 train, 2 val frames of 64x32) written by the session.

    Shared by tests: copy it (shutil.copytree) before changing anything in it.
    """
    return write_tiny_cityscapes(tmp_path_factory.mktemp("tiny_cityscapes"))


@pytest.fixture(scope="module")
def context():
    """One ROS context for the test module (rclpy is imported only by tests that ask for it)."""
    from ros_helpers import ros_context

    with ros_context() as ctx:
        yield ctx


@pytest.fixture
def rig_factory(context, random_weights):
    """Build a segmentation node and probe (``node_rig.Rig``) with the given node parameters.

    Each rig gets its own namespace, spins for the rest of the test, and uses the random
    weights unless ``weights=`` is given.
    """
    import contextlib

    from node_rig import Rig, next_namespace
    from ros_helpers import spinning

    with contextlib.ExitStack() as stack:
        def build(**parameters):
            weights = parameters.pop("weights", random_weights)
            rig = Rig(context, weights, next_namespace(), **parameters)
            stack.enter_context(spinning(context, rig.node, rig.probe))
            return rig

        yield build
