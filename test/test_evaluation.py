"""Offline evaluation without ROS: the scoring core, rosbag2 files, evaluation of a bag.

No ROS graph here; test_evaluation_live.py replays bags into running nodes.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from lednet_ros.core.data.bags import BagError, BagTopics, read_frames, write_bag
from lednet_ros.core.data.datasets import CamVid
from lednet_ros.core.evaluation.metrics import ConfusionMatrix
from lednet_ros.core.evaluation.scoring import REPORT_FILES, Evaluation, StampMatcher, write_report
from lednet_ros.core.inference.segmenter import Segmenter
from lednet_ros.tools.evaluate_bag import evaluate_bag

from drawn_scenes import made_frames, perfect_bag

# ---- the scoring core ------------------------------------------------------------------------

def test_matcher_pairs_by_stamp_in_any_order_and_counts_the_rest():
    matcher = StampMatcher(max_pending=3)
    assert matcher.add("prediction", 2, "p2") is None
    assert matcher.add("ground_truth", 1, "g1") is None
    assert matcher.add("ground_truth", 2, "g2") == ("p2", "g2")
    assert matcher.add("prediction", 1, "p1") == ("p1", "g1")
    assert matcher.add("ground_truth", 1, "g1 again") is None and matcher.duplicates == 1
    assert matcher.add("prediction", 5, "p5") is None
    assert matcher.add("prediction", 5, "again") is None
    assert matcher.duplicates == 2
    for stamp in (6, 7, 8):  # the fourth waiting prediction evicts the oldest (5)
        matcher.add("prediction", stamp, f"p{stamp}")
    assert matcher.evicted["prediction"] == 1
    assert matcher.add("ground_truth", 5, "g5") is None  # its partner is gone
    assert matcher.unmatched("prediction") == 4 and matcher.unmatched("ground_truth") == 1


def test_evaluation_scores_pairs_like_the_confusion_matrix(tmp_path):
    rng = np.random.default_rng(1)
    names = ["a", "b", "c"]
    targets = [rng.integers(0, 4, (6, 8)).astype(np.uint8) for _ in range(4)]  # 3: ignored
    predictions = [rng.integers(0, 3, (6, 8)).astype(np.uint8) for _ in range(4)]
    evaluation = Evaluation(names)
    for stamp in (3, 1, 0, 2):
        evaluation.add_prediction(stamp, predictions[stamp], latency_ms=10.0 * stamp)
    for stamp in range(4):
        evaluation.add_ground_truth(stamp, targets[stamp])
    reference = ConfusionMatrix(3)
    for target, prediction in zip(targets, predictions):
        reference.update(target, prediction)
    summary = evaluation.summary()
    assert summary["confusion_matrix"] == reference.matrix.tolist()
    assert summary["mean_iou"] == pytest.approx(reference.mean_iou())
    assert summary["frames"]["matched"] == 4
    assert summary["latency_ms"]["max"] == 30.0
    paths = write_report(tmp_path / "report", summary)
    assert [p.name for p in paths] == list(REPORT_FILES)
    assert json.loads(paths[0].read_text())["per_class_iou"].keys() == set(names)
    assert f"{100 * reference.mean_iou():.2f}%" in paths[1].read_text()
    image = cv2.imread(str(paths[2]))
    assert image is not None and image.shape[0] > 3 * 30


# ---- bags ------------------------------------------------------------------------------------

@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip(tmp_path, storage):
    frames = made_frames(3, size=(80, 48))
    labels = [np.full((48, 80), i, np.uint8) for i in range(3)]
    assert write_bag(tmp_path / "bag", zip(frames, labels), storage=storage, rate_hz=4) == 3
    read = list(read_frames(tmp_path / "bag"))
    assert [f.kind for f in read] == ["image", "ground_truth"] * 3
    stamps = [f.stamp_ns for f in read[::2]]
    assert np.diff(stamps).tolist() == [250_000_000, 250_000_000]
    for i in range(3):
        assert np.array_equal(read[2 * i].array, frames[i])
        assert np.array_equal(read[2 * i + 1].array, labels[i])


def test_bad_bags_are_refused_with_the_reason(tmp_path):
    with pytest.raises(BagError, match="no such bag"):
        list(read_frames(tmp_path / "missing"))
    write_bag(tmp_path / "bag", zip(made_frames(2, size=(48, 32)), [None, None]))
    with pytest.raises(BagError, match="no /front/image topic"):
        list(read_frames(tmp_path / "bag", BagTopics(image="/front/image")))
    (storage_file,) = (tmp_path / "bag").glob("*.mcap")
    storage_file.write_bytes(storage_file.read_bytes()[:200])
    with pytest.raises(BagError, match="cannot read the bag"):
        list(read_frames(tmp_path / "bag"))
    with pytest.raises(BagError, match="already exists"):
        write_bag(tmp_path / "bag", [])


def test_bag_writer_command_line(tmp_path):
    from lednet_ros.tools.write_bag import main

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for i, rgb in enumerate(made_frames(2, size=(40, 24))):
        cv2.imwrite(str(images / f"f{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(labels / f"f{i}.png"), np.full((24, 40), i + 1, np.uint8))
    assert main(["--images", str(images), "--labels", str(labels), "--out",
                 str(tmp_path / "bag"), "--storage", "sqlite3"]) == 0
    truth = [f.array for f in read_frames(tmp_path / "bag") if f.kind == "ground_truth"]
    assert [int(t.max()) for t in truth] == [1, 2]
    (labels / "f1.png").unlink()
    assert main(["--images", str(images), "--labels", str(labels), "--out",
                 str(tmp_path / "bag2")]) == 1


# ---- offline evaluation ----------------------------------------------------------------------

def test_offline_evaluation_of_a_perfect_model_and_of_shifted_truth(tmp_path,
                                                                    small_shipped_segmenter):
    frames = made_frames(4)
    truth = perfect_bag(tmp_path / "bag", small_shipped_segmenter, frames)
    summary = evaluate_bag(tmp_path / "bag", small_shipped_segmenter).summary()
    assert summary["mean_iou"] == 1.0 and summary["pixel_accuracy"] == 1.0
    assert summary["frames"]["matched"] == 4
    # The same frames with each frame's truth moved to the next frame: no longer perfect.
    write_bag(tmp_path / "shifted", zip(frames, truth[1:] + truth[:1]))
    assert evaluate_bag(tmp_path / "shifted", small_shipped_segmenter).summary()["mean_iou"] < 0.9


def test_offline_command_line_writes_the_report(tmp_path, random_weights, small_shipped_segmenter):
    from lednet_ros.tools.evaluate_bag import main

    perfect_bag(tmp_path / "bag", small_shipped_segmenter, made_frames(2), storage="sqlite3")
    assert main([str(tmp_path / "bag"), "--engine", "torch", "--input-size", "256x128",
                 "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["mean_iou"] == 1.0 and report["source"]["mode"] == "offline"
    assert main([str(tmp_path / "nothing"), "--weights", str(random_weights)]) == 1


def test_camvid_bag_offline_matches_direct_scoring(tmp_path, camvid_root):
    dataset = CamVid(camvid_root, "test")
    pairs = [dataset.load(i) for i in range(0, len(dataset), len(dataset) // 3)][:3]
    write_bag(tmp_path / "camvid", pairs)
    segmenter = Segmenter.from_weights(None)  # the shipped CamVid weights, default engine
    direct = ConfusionMatrix(segmenter.num_classes)
    for rgb, label in pairs:
        direct.update(label, segmenter.segment(rgb))
    summary = evaluate_bag(tmp_path / "camvid", segmenter).summary()
    assert summary["confusion_matrix"] == direct.matrix.tolist()
    assert summary["mean_iou"] > 0.3  # real segmentation, not noise
