"""The weights shipped with the package: they load, carry their metadata, and segment a road scene."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lednet_ros.checkpoint import load_weights, read_metadata
from lednet_ros.labels import CAMVID
from lednet_ros.model import count_parameters
from lednet_ros.segmenter import Segmenter, default_weights_path


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter.from_weights(engine="torch")


def road_scene(height: int = 360, width: int = 480) -> np.ndarray:
    """A drawn street: bright overcast sky, a band of buildings, an asphalt road with a lane line."""
    image = np.zeros((height, width, 3), np.uint8)
    sky_rows = int(0.42 * height)
    fade = np.linspace(0.0, 0.1, sky_rows)[:, None, None]
    image[:sky_rows] = (np.array([235, 240, 250]) * (1 - fade)).astype(np.uint8)
    image[sky_rows:int(0.55 * height)] = (110, 95, 85)
    image[int(0.55 * height):] = (80, 78, 85)
    cv2.line(image, (width // 2, height - 1), (width // 2, int(0.58 * height)), (230, 230, 230), 4)
    return image


def test_shipped_weights_have_their_metadata():
    meta = read_metadata(default_weights_path())
    assert meta.dataset == "camvid"
    assert meta.class_names == list(CAMVID.names)
    assert meta.class_colors == [list(c) for c in CAMVID.colors]
    assert meta.decoder == "apn"
    assert meta.input_size == [480, 360]
    assert len(meta.mean) == 3 and len(meta.std) == 3
    assert meta.recipe["dataset"] == "camvid" and meta.recipe["epochs"] > 0
    assert 0.45 <= meta.metrics["test"]["mean_iou"] <= 1.0  # 47.9% reached (README)
    assert set(meta.metrics["test"]["per_class_iou"]) == set(CAMVID.names)


def test_shipped_weights_load_into_the_paper_model(segmenter):
    assert segmenter.num_classes == 11
    model, _ = load_weights(default_weights_path())
    # The paper's 0.92M model; two 1x1 conv-BN heads of 131 parameters per class: 11, not 19.
    assert count_parameters(model) == 922_821 - 2 * 131 * 8


def test_road_scene_is_sky_on_top_and_road_below(segmenter):
    labels = segmenter.segment(road_scene())
    names = segmenter.class_names

    def majority(rows: slice) -> tuple[str, float]:
        counts = np.bincount(labels[rows].ravel(), minlength=segmenter.num_classes)
        return names[counts.argmax()], counts.max() / counts.sum()

    top_class, top_share = majority(slice(0, 100))
    bottom_class, bottom_share = majority(slice(260, 360))
    assert top_class == "sky" and top_share > 0.8, (top_class, top_share)
    assert bottom_class == "road" and bottom_share > 0.8, (bottom_class, bottom_share)


def test_camvid_test_frame_is_mostly_right(segmenter, camvid_root):
    """A real CamVid test frame: pixel accuracy against its ground truth well above chance."""
    from lednet_ros.metrics import ConfusionMatrix

    image = cv2.cvtColor(cv2.imread(str(camvid_root / "test" / "0001TP_008550.png")),
                         cv2.COLOR_BGR2RGB)
    truth = cv2.imread(str(camvid_root / "testannot" / "0001TP_008550.png"), cv2.IMREAD_UNCHANGED)
    matrix = ConfusionMatrix(11)
    matrix.update(truth, segmenter.segment(image))
    assert matrix.pixel_accuracy() > 0.75
