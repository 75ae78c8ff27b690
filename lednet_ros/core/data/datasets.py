"""Cityscapes (official layout) and CamVid (SegNet 11-class layout) as (RGB image, label) pairs.

``open_split`` opens one split or a union such as ``train+val`` (CamVid's train + val protocol).

A missing or malformed dataset raises DatasetError naming the path and what was expected, before
any training starts: constructing a dataset checks that every image has its label, and reads every
PNG header (33 bytes) to check the label format and that image and label sizes agree. Label values
are checked on every read.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lednet_ros.core.data.classes import (
    CAMVID,
    CITYSCAPES,
    CITYSCAPES_LABEL_TO_CAMVID,
    CITYSCAPES_TRAIN_TO_LABEL_ID,
    ClassSet,
    cityscapes_label_id_lut,
    lookup_table,
)


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the path and what was expected."""


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_header(path: Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk, reading only 33 bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(33)
    except OSError as exc:
        raise DatasetError(f"{path}: not readable: {exc.strerror}") from None
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise DatasetError(f"{path}: not a PNG file")
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return width, height, head[24], head[25]


def check_pair(image_path: Path, label_path: Path) -> None:
    """Check from the PNG headers alone: an 8-bit single-channel label of the image's size."""
    width, height, _, _ = png_header(image_path)
    label_width, label_height, depth, colour_type = png_header(label_path)
    if depth != 8 or colour_type != 0:
        raise DatasetError(f"{label_path}: expected a single-channel 8-bit label PNG, got bit "
                           f"depth {depth}, colour type {colour_type}")
    if (width, height) != (label_width, label_height):
        raise DatasetError(f"{image_path} is {width}x{height} but its label {label_path} is "
                           f"{label_width}x{label_height}")


def read_label(path: Path) -> np.ndarray:
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise DatasetError(f"{path}: not a readable label image")
    if label.ndim != 2 or label.dtype != np.uint8:
        raise DatasetError(f"{path}: expected a single-channel 8-bit label image, got "
                           f"shape {label.shape} dtype {label.dtype}")
    return label


class SegmentationDataset:
    """(image path, label path) pairs; ``transform(image, label, rng)`` applied on read."""

    class_set: ClassSet

    def __init__(self, pairs: list[tuple[Path, Path]], transform=None):
        for image_path, label_path in pairs:
            check_pair(image_path, label_path)
        self.pairs = pairs
        self.transform = transform

    @classmethod
    def from_pairs(cls, pairs: list[tuple[Path, Path]], transform=None):
        """Make a dataset of this kind (its classes and label decoding) over the given pairs."""
        dataset = cls.__new__(cls)
        SegmentationDataset.__init__(dataset, pairs, transform)
        return dataset

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, label_path = self.pairs[index]
        image, label = read_rgb(image_path), self.read_target(label_path)
        if image.shape[:2] != label.shape:
            raise DatasetError(f"{image_path} is {image.shape[1]}x{image.shape[0]} but its label "
                               f"{label_path} is {label.shape[1]}x{label.shape[0]}")
        return image, label

    def read_target(self, path: Path) -> np.ndarray:
        """Read the label at ``path``, checking its values.

        Each value is a class id, the dataset's void id, or 255; any other value is an error.
        """
        label = self.decode_target(path)
        n, void = self.class_set.num_classes, self.class_set.ignore_index
        bad = label[(label >= n) & (label != void) & (label != 255)]
        if bad.size:
            raise DatasetError(f"{path}: label value {int(bad[0])} is neither a class id "
                               f"0..{n - 1} of {self.class_set.name} nor void ({void} or 255)")
        return label

    def decode_target(self, path: Path) -> np.ndarray:
        return read_label(path)

    def __getitem__(self, item):
        """``item`` is an index, or (index, seed) so augmentation is reproducible per epoch."""
        index, seed = item if isinstance(item, tuple) else (item, index_seed(item))
        image, label = self.load(index)
        if self.transform is not None:
            return self.transform(image, label, np.random.default_rng(seed))
        return image, label


def index_seed(index: int) -> int:
    return index


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: missing; expected {what}")
    return path


class CamVid(SegmentationDataset):
    """CamVid in SegNet's layout: ``<root>/<split>/*.png`` and ``<root>/<split>annot/*.png``."""

    class_set = CAMVID

    def __init__(self, root, split: str = "train", transform=None):
        root = Path(root)
        _require_dir(root, "a CamVid folder with train/, trainannot/, val/, ... (SegNet layout)")
        images = _require_dir(root / split, f"CamVid {split} images (480x360 PNG)")
        labels = _require_dir(root / f"{split}annot", f"CamVid {split} labels (PNG, values 0..11)")
        pairs = []
        for image in sorted(images.glob("*.png")):
            label = labels / image.name
            if not label.is_file():
                raise DatasetError(f"{label}: missing; expected the label of {image}")
            pairs.append((image, label))
        if not pairs:
            raise DatasetError(f"{images}: no *.png images")
        super().__init__(pairs, transform)


class Cityscapes(SegmentationDataset):
    """Cityscapes: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with gtFine labels.

    ``*_gtFine_labelTrainIds.png`` is used when present; otherwise ``*_gtFine_labelIds.png`` is
    mapped to the 19 train ids (255 = ignore).
    """

    class_set = CITYSCAPES
    _lut = cityscapes_label_id_lut()

    def __init__(self, root, split: str = "train", transform=None):
        root = Path(root)
        _require_dir(root, "a Cityscapes folder with leftImg8bit/ and gtFine/")
        images = _require_dir(root / "leftImg8bit" / split, f"leftImg8bit/{split}/<city>/ images")
        labels = _require_dir(root / "gtFine" / split, f"gtFine/{split}/<city>/ labels")
        pairs = []
        for image in sorted(images.glob("*/*_leftImg8bit.png")):
            stem = image.name[: -len("_leftImg8bit.png")]
            city = labels / image.parent.name
            train_ids = city / f"{stem}_gtFine_labelTrainIds.png"
            label_ids = city / f"{stem}_gtFine_labelIds.png"
            if train_ids.is_file():
                pairs.append((image, train_ids))
            elif label_ids.is_file():
                pairs.append((image, label_ids))
            else:
                raise DatasetError(f"{label_ids}: missing; expected the gtFine label of {image}")
        if not pairs:
            raise DatasetError(f"{images}: no <city>/*_leftImg8bit.png images")
        super().__init__(pairs, transform)

    def decode_target(self, path: Path) -> np.ndarray:
        label = read_label(path)
        return label if path.name.endswith("_labelTrainIds.png") else self._lut[label]


class CityscapesAsCamVid(Cityscapes):
    """Cityscapes frames labelled with CamVid's 11 classes (classes.CITYSCAPES_LABEL_TO_CAMVID).

    For scoring CamVid weights out of domain. labelTrainIds files go through their labelIds, so
    polegroup (labelId 18, no trainId) counts as pole only where labelIds are read.
    """

    class_set = CAMVID
    _lut = lookup_table(CITYSCAPES_LABEL_TO_CAMVID)
    _train_id_lut = lookup_table(CITYSCAPES_TRAIN_TO_LABEL_ID)

    def decode_target(self, path: Path) -> np.ndarray:
        label = read_label(path)
        if path.name.endswith("_labelTrainIds.png"):
            label = self._train_id_lut[label]
        return self._lut[label]


# Cityscapes frames show the ego car's bonnet below row 800 of 1024: the fraction of rows to keep.
CITYSCAPES_KEEP_TOP = 800 / 1024


def keep_top(image: np.ndarray, fraction: float) -> np.ndarray:
    """Return the top ``fraction`` of an image's rows (rounded), a view; ValueError naming it."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction of rows to keep {fraction}: expected a value in (0, 1]")
    return image[:max(1, round(image.shape[0] * fraction))]


DATASETS = {"camvid": CamVid, "cityscapes": Cityscapes}


def split_names(split: str) -> list[str]:
    """Return the split names of ``split``: one name, or names joined by '+' (``"train+val"``)."""
    names = split.split("+")
    if len(set(names)) != len(names) or not all(names):
        raise DatasetError(f"split {split!r}: expected split names joined by '+', each once")
    return names


def open_split(dataset_cls, root, split: str, transform=None) -> SegmentationDataset:
    """Open ``split``, or the union of splits joined by '+' (``"train+val"``), in that order."""
    names = split_names(split)
    if len(names) == 1:
        return dataset_cls(root, split, transform)
    pairs = [pair for name in names for pair in dataset_cls(root, name).pairs]
    return dataset_cls.from_pairs(pairs, transform)
