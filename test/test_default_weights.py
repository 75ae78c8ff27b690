"""The weights shipped with the package.

They load, carry their metadata, and segment a road scene.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lednet_ros.core.data.classes import CAMVID
from lednet_ros.core.inference.checkpoint import load_weights, read_metadata
from lednet_ros.core.inference.model import count_parameters
from lednet_ros.core.inference.segmenter import Segmenter, default_weights_path

from drawn_scenes import road_scene


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter.from_weights(engine="torch")


def test_shipped_weights_have_their_metadata():
    meta = read_metadata(default_weights_path())
    assert meta.dataset == "camvid"
    assert meta.class_names == list(CAMVID.names)
    assert meta.class_colors == [list(c) for c in CAMVID.colors]
    assert meta.decoder == "apn"
    assert meta.input_size == [480, 360]
    assert len(meta.mean) == 3 and len(meta.std) == 3
    assert meta.recipe["dataset"] == "camvid" and meta.recipe["epochs"] > 0
    assert 0.580 <= meta.metrics["test"]["mean_iou"] <= 1.0  # 58.7% reached (README, issue 29)
    assert set(meta.metrics["test"]["per_class_iou"]) == set(CAMVID.names)
    assert meta.metrics["test"]["per_class_iou"]["pedestrian"] >= 0.40  # robust_v1: 44.3%


def test_shipped_weights_load_into_the_paper_model(segmenter):
    assert segmenter.num_classes == 11
    model, _ = load_weights(default_weights_path())
    # The paper's 0.92M model; two 1x1 conv-BN heads of 131 parameters per class: 11, not 19.
    assert count_parameters(model) == 922_821 - 2 * 131 * 8


@pytest.mark.parametrize("seed", [0, 1])
def test_road_scene_is_sky_on_top_road_below(segmenter, seed):
    # The drawing's facades are flat colour blocks that no CamVid frame has (with drawn windows
    # both the earlier and the current weights call them pole, pedestrian or pavement): whether
    # buildings are seen is checked on a real frame below.
    labels = segmenter.segment(road_scene(seed=seed))
    names = segmenter.class_names

    def majority(rows: slice, cols: slice) -> tuple[str, float]:
        counts = np.bincount(labels[rows, cols].ravel(), minlength=segmenter.num_classes)
        return names[counts.argmax()], counts.max() / counts.sum()

    sky = majority(slice(0, 100), slice(110, 370))  # open sky between the buildings
    road = majority(slice(230, 360), slice(None))
    # robust_v1: 84% and 85% of the open sky (run 6 had over 90%; the rest is building, which
    # the drawing's bright overcast sky beside flat facades invites)
    assert sky[0] == "sky" and sky[1] > 0.8, sky
    assert road[0] == "road" and road[1] > 0.9, road


def test_camvid_test_frame_is_mostly_right(segmenter, camvid_root):
    """A real CamVid test frame: pixel accuracy above chance; sky, building, road, car found."""
    from lednet_ros.core.evaluation.metrics import ConfusionMatrix

    image = cv2.cvtColor(cv2.imread(str(camvid_root / "test" / "0001TP_008550.png")),
                         cv2.COLOR_BGR2RGB)
    truth = cv2.imread(str(camvid_root / "testannot" / "0001TP_008550.png"), cv2.IMREAD_UNCHANGED)
    matrix = ConfusionMatrix(11)
    labels = segmenter.segment(image)
    matrix.update(truth, labels)
    assert matrix.pixel_accuracy() > 0.75
    for name in ("sky", "building", "road", "car"):  # most of each class's pixels found
        index = segmenter.class_names.index(name)
        assert (labels[truth == index] == index).mean() > 0.8, name
