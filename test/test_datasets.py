"""Datasets, paired transforms and presets: label mapping, dataset errors, pairing.

core/data/datasets.py, training/transforms.py and training/presets.py, on tiny Cityscapes
trees the tests write themselves and on the real ../shared/data cityscapes_mini and camvid
(skipping where absent). No ROS.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # training/ (after the install space)

from lednet_ros.core.data.datasets import CamVid, Cityscapes, DatasetError, open_split  # noqa: E402
from training import train  # noqa: E402
from training.presets import train_preset  # noqa: E402
from training.transforms import (  # noqa: E402
    Compose, RandomCrop, RandomHorizontalFlip, RandomScale, RandomTranslate, Resize, ToTensor,
)

# cityscapesScripts helpers/labels.py: labelId -> trainId for the 19 evaluated classes; every other
# id (0-6, 9, 10, 14-16, 18, 29, 30, and anything above 33) is ignored (255).
OFFICIAL_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                      24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def official_train_ids(label_ids: np.ndarray) -> np.ndarray:
    out = np.full(label_ids.shape, 255, np.uint8)
    for label_id, train_id in OFFICIAL_TRAIN_IDS.items():
        out[label_ids == label_id] = train_id
    return out


def write_frame(root: Path, split: str, stem: str, rgb: np.ndarray, label_ids=None,
                train_ids=None, city: str = "testcity") -> None:
    images, labels = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(images / f"{stem}_leftImg8bit.png"), rgb[..., ::-1])
    if label_ids is not None:
        cv2.imwrite(str(labels / f"{stem}_gtFine_labelIds.png"), label_ids)
    if train_ids is not None:
        cv2.imwrite(str(labels / f"{stem}_gtFine_labelTrainIds.png"), train_ids)


def test_every_cityscapes_label_id_maps_to_its_train_id(tmp_path):
    label_ids = np.arange(256, dtype=np.uint8).reshape(8, 32)  # every possible value
    write_frame(tmp_path, "train", "a_000000_000000", np.zeros((8, 32, 3), np.uint8), label_ids)
    _, label = Cityscapes(tmp_path, "train").load(0)
    np.testing.assert_array_equal(label, official_train_ids(label_ids))
    assert sorted(set(np.unique(label)) - {255}) == list(range(19))


def test_label_train_ids_are_used_when_present(tmp_path):
    rgb = np.zeros((8, 16, 3), np.uint8)
    label_ids = np.full((8, 16), 7, np.uint8)  # road everywhere: would give train id 0
    train_ids = np.tile(np.arange(16, dtype=np.uint8), (8, 1))
    write_frame(tmp_path, "train", "a_000000_000000", rgb, label_ids, train_ids)
    write_frame(tmp_path, "train", "a_000001_000000", rgb, label_ids)
    dataset = Cityscapes(tmp_path, "train")
    np.testing.assert_array_equal(dataset.load(0)[1], train_ids)
    np.testing.assert_array_equal(dataset.load(1)[1], np.zeros((8, 16), np.uint8))


def test_tiny_tree_labels_match_their_label_ids(tiny_cityscapes):
    dataset = Cityscapes(tiny_cityscapes, "train")
    assert len(dataset) == 8
    for index, (_, label_path) in enumerate(dataset.pairs):
        stem = label_path.name.split("_gtFine_")[0]
        raw = cv2.imread(str(label_path.parent / f"{stem}_gtFine_labelIds.png"),
                         cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(dataset.load(index)[1], official_train_ids(raw))


def test_a_union_of_splits_holds_both_in_order(tiny_cityscapes):
    train_set, val_set = Cityscapes(tiny_cityscapes, "train"), Cityscapes(tiny_cityscapes, "val")
    union = open_split(Cityscapes, tiny_cityscapes, "train+val", transform=ToTensor())
    assert union.pairs == train_set.pairs + val_set.pairs and len(union) == 10
    assert isinstance(union, Cityscapes) and union.class_set is train_set.class_set
    image, label = union[len(union) - 1]  # the last val frame, through the transform
    expected = val_set.load(len(val_set) - 1)[1]
    assert image.shape == (3, 32, 64) and torch.equal(label, torch.from_numpy(expected).long())


@pytest.mark.parametrize("split, message", [
    ("train+train", "'train\\+train': expected split names joined by '\\+', each once"),
    ("train+", "'train\\+': expected split names"),
    ("train+test", "leftImg8bit/test/<city>/ images"),
])
def test_a_bad_union_of_splits_names_the_split(tiny_cityscapes, split, message):
    with pytest.raises(DatasetError, match=message):
        open_split(Cityscapes, tiny_cityscapes, split)


def test_real_cityscapes_mini_maps_official_label_ids(cityscapes_root):
    train_set, val_set = Cityscapes(cityscapes_root, "train"), Cityscapes(cityscapes_root, "val")
    assert (len(train_set), len(val_set)) == (2, 5)
    index = next(i for i, (image, _) in enumerate(train_set.pairs) if "aachen" in image.name)
    image, label = train_set.load(index)
    assert image.shape == (1024, 2048, 3) and label.shape == (1024, 2048)
    raw = cv2.imread(str(train_set.pairs[index][1]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(label, official_train_ids(raw))
    present = set(np.unique(label).tolist())
    assert {0, 2, 8, 10, 13} <= present  # road, building, vegetation, sky, car in aachen_000000
    assert present <= set(range(19)) | {255}


def test_real_camvid_void_becomes_255_in_to_tensor(camvid_root):
    dataset = CamVid(camvid_root, "train", Compose([ToTensor(void_id=11)]))
    assert len(dataset) == 367
    assert len(CamVid(camvid_root, "val")) == 101 and len(CamVid(camvid_root, "test")) == 233
    index = next(i for i in range(len(dataset)) if (dataset.load(i)[1] == 11).any())
    raw = dataset.load(index)[1]
    x, y = dataset[index]
    assert x.shape == (3, 360, 480) and y.dtype == torch.int64
    expected = torch.from_numpy(raw.astype(np.int64))
    expected[expected == 11] = 255
    assert torch.equal(y, expected)
    assert set(torch.unique(y).tolist()) <= set(range(11)) | {255}


def bad_tree(tiny_cityscapes: Path, tmp_path: Path) -> Path:
    root = tmp_path / "cityscapes"
    shutil.copytree(tiny_cityscapes, root)
    return root


def first_label(root: Path, split: str = "train") -> Path:
    return sorted((root / "gtFine" / split).glob("*/*_gtFine_labelIds.png"))[0]


def break_missing_label(root: Path) -> tuple[Path, str]:
    label = first_label(root)
    label.unlink()
    label.with_name(label.name.replace("labelIds", "labelTrainIds")).unlink(missing_ok=True)
    return label, "missing"


def break_label_size(root: Path) -> tuple[Path, str]:
    label = first_label(root)
    cv2.imwrite(str(label), np.zeros((16, 64), np.uint8))
    label.with_name(label.name.replace("labelIds", "labelTrainIds")).unlink(missing_ok=True)
    return label, "is 64x16"


def break_label_format(root: Path) -> tuple[Path, str]:
    label = sorted((root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))[1]
    cv2.imwrite(str(label), np.zeros((32, 64, 3), np.uint8))  # a colour image, not ids
    return label, "single-channel 8-bit"


def break_image_file(root: Path) -> tuple[Path, str]:
    image = sorted((root / "leftImg8bit" / "train").glob("*/*.png"))[-1]
    image.write_bytes(b"this is not an image")
    return image, "not a PNG"


def break_label_values(root: Path) -> tuple[Path, str]:
    label = sorted((root / "gtFine" / "train").glob("*/*_gtFine_labelTrainIds.png"))[-1]
    values = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    values[3, 5] = 40
    cv2.imwrite(str(label), values)
    return label, "label value 40"


def break_missing_split(root: Path) -> tuple[Path, str]:
    shutil.rmtree(root / "gtFine" / "val")
    return root / "gtFine" / "val", "missing"


@pytest.mark.parametrize("break_tree", [
    break_missing_label, break_label_size, break_label_format, break_image_file,
    break_label_values, break_missing_split])
def test_malformed_dataset_stops_training_before_it_starts(tiny_cityscapes, tmp_path, break_tree):
    root = bad_tree(tiny_cityscapes, tmp_path)
    bad_path, what = break_tree(root)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as error:
        train.main(["--dataset", "cityscapes", "--data-path", str(root), "--resize", "64x32",
                    "--epochs", "1", "--batch-size", "2", "--output-dir", str(out)])
    message = str(error.value.code)
    assert str(bad_path) in message and what in message, message
    assert not (out / "last.pt").exists() and not (out / "log.csv").exists()


@pytest.mark.parametrize("dataset", ["cityscapes", "camvid"])
def test_missing_dataset_names_the_path_and_the_layout(tmp_path, dataset):
    missing = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as error:
        train.main(["--dataset", dataset, "--data-path", str(missing),
                    "--output-dir", str(tmp_path / "run")])
    message = str(error.value.code)
    assert str(missing) in message and "expected" in message, message
    assert ("leftImg8bit" if dataset == "cityscapes" else "trainannot") in message


def test_camvid_without_labels_names_the_missing_folder(tmp_path):
    (tmp_path / "train").mkdir()
    cv2.imwrite(str(tmp_path / "train" / "a.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match="trainannot: missing"):
        CamVid(tmp_path, "train")


def test_empty_split_is_an_error(tmp_path):
    (tmp_path / "leftImg8bit" / "train").mkdir(parents=True)
    (tmp_path / "gtFine" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no <city>/\\*_leftImg8bit.png images"):
        Cityscapes(tmp_path, "train")


# Paired transforms. The image's first channel carries the label value, so after any geometric
# transform image and label must still agree pixel for pixel.

def paired_sample(width: int = 40, height: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 19, (height, width), dtype=np.uint8)
    image = np.stack([label * 10, rng.integers(0, 256, (height, width), dtype=np.uint8),
                      np.full((height, width), 7, np.uint8)], axis=-1)
    return image, label


def test_resize_keeps_label_values_and_changes_both_sizes():
    image, label = paired_sample()
    for size in [(17, 9), (40, 24), (123, 61)]:
        out_image, out_label = Resize(size)(image, label, None)
        assert out_image.shape == (size[1], size[0], 3) and out_label.shape == (size[1], size[0])
        assert set(np.unique(out_label)) <= set(np.unique(label))  # nearest: no new values
    out_image, out_label = Resize((80, 48))(image, label, None)  # 2x: nearest is a repeat
    np.testing.assert_array_equal(out_label, label.repeat(2, 0).repeat(2, 1))


def test_random_scale_keeps_label_values():
    image, label = paired_sample()
    for seed in range(5):
        _, out_label = RandomScale(0.5, 1.75)(image, label, np.random.default_rng(seed))
        assert set(np.unique(out_label)) <= set(np.unique(label))


def test_crop_larger_than_the_image_pads_labels_with_255():
    image, label = paired_sample(width=40, height=24)
    out_image, out_label = RandomCrop((64, 32))(image, label, np.random.default_rng(0))
    assert out_label.shape == (32, 64) and out_image.shape == (32, 64, 3)
    np.testing.assert_array_equal(out_label[:24, :40], label)  # the input sits top-left
    assert (out_label[24:] == 255).all() and (out_label[:, 40:] == 255).all()
    assert (out_image[24:] == 0).all() and (out_image[:, 40:] == 0).all()


def test_crop_takes_the_same_window_of_image_and_label():
    image, label = paired_sample()
    for seed in range(5):
        out_image, out_label = RandomCrop((16, 8))(image, label, np.random.default_rng(seed))
        np.testing.assert_array_equal(out_image[..., 0], out_label * 10)


def test_flip_applies_to_image_and_label_together():
    image, label = paired_sample()
    flip = RandomHorizontalFlip(1.0)
    flipped_image, flipped_label = flip(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(flipped_label, label[:, ::-1])
    np.testing.assert_array_equal(flipped_image, image[:, ::-1])
    kept_image, kept_label = RandomHorizontalFlip(0.0)(image, label, np.random.default_rng(0))
    assert kept_image is image and kept_label is label


def test_translation_shifts_both_and_fills_labels_with_255():
    image, label = paired_sample()
    seed = next(s for s in range(100)
                if (np.random.default_rng(s).integers(-3, 4, size=2) != 0).all())
    dx, dy = np.random.default_rng(seed).integers(-3, 4, size=2)
    out_image, out_label = RandomTranslate(3)(image, label, np.random.default_rng(seed))
    height, width = label.shape
    shifted = np.full_like(label, 255)
    shifted[max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        label[max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    np.testing.assert_array_equal(out_label, shifted)
    filled = shifted == 255
    assert filled.sum() == height * width - (height - abs(dy)) * (width - abs(dx))
    assert (out_image[filled] == 0).all()
    np.testing.assert_array_equal(out_image[~filled][:, 0], out_label[~filled] * 10)


def test_training_pipeline_is_paired_and_reproducible():
    pipeline = train_preset(resize=(40, 24), crop=(32, 16), translate=2,
                            void_id=Cityscapes.class_set.ignore_index)
    image, label = paired_sample()
    for seed in range(8):
        x, y = pipeline(image, label, np.random.default_rng(seed))
        again_x, again_y = pipeline(image, label, np.random.default_rng(seed))
        assert torch.equal(x, again_x) and torch.equal(y, again_y)
        assert x.shape == (3, 16, 32) and y.shape == (16, 32)
        valid = y != 255
        red = (x[0] * 255).round().long()
        assert torch.equal(red[valid], y[valid] * 10)
        assert (x[:, ~valid] == 0).all()


def test_to_tensor_normalises_and_maps_the_void_id():
    image = np.full((2, 3, 3), 255, np.uint8)
    label = np.array([[0, 11, 5], [11, 10, 255]], np.uint8)
    x, y = ToTensor(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0), void_id=11)(image, label, None)
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, 3.0, 0.5]))
    assert y.tolist() == [[0, 255, 5], [255, 10, 255]]
