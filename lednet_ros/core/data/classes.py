"""Class sets as data: names, colours and id maps of Cityscapes and CamVid.

Cityscapes has 19 train classes, CamVid 11.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassSet:
    """Names and RGB colours of a dataset's training classes.

    ``ignore_index`` marks void pixels.
    """

    name: str
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int

    @property
    def num_classes(self) -> int:
        return len(self.names)


CITYSCAPES = ClassSet(
    name="cityscapes",
    names=(
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
        "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
        "motorcycle", "bicycle",
    ),
    colors=(
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
        (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ),
    ignore_index=IGNORE_INDEX,
)

# Official Cityscapes labelId -> trainId (labels.py of cityscapesScripts); every other id is void.
CITYSCAPES_LABEL_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
CITYSCAPES_TRAIN_TO_LABEL_ID = {
    train_id: label_id for label_id, train_id in CITYSCAPES_LABEL_TO_TRAIN_ID.items()}

CAMVID = ClassSet(
    name="camvid",
    names=(
        "sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car",
        "pedestrian", "bicyclist",
    ),
    colors=(
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
        (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
    ),
    ignore_index=11,
)

CLASS_SETS = {c.name: c for c in (CITYSCAPES, CAMVID)}

# Cityscapes labelId -> CamVid class name, to score CamVid weights on Cityscapes frames (out of
# domain). Every other id (terrain, void, ...) is ignored.
CITYSCAPES_LABEL_TO_CAMVID_NAME = {
    7: "road", 8: "pavement", 11: "building", 12: "building", 13: "fence", 17: "pole",
    18: "pole", 19: "sign symbol", 20: "sign symbol", 21: "tree", 23: "sky", 24: "pedestrian",
    25: "bicyclist", 32: "bicyclist", 33: "bicyclist", 26: "car", 27: "car", 28: "car", 31: "car",
}
CITYSCAPES_LABEL_TO_CAMVID = {label_id: CAMVID.names.index(name)
                              for label_id, name in CITYSCAPES_LABEL_TO_CAMVID_NAME.items()}


def lookup_table(mapping: dict[int, int]) -> np.ndarray:
    """Return a 256-entry uint8 lookup table of ``mapping``; every other value maps to 255."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for source, target in mapping.items():
        lut[source] = target
    return lut


def cityscapes_label_id_lut() -> np.ndarray:
    """Return a 256-entry lookup table mapping Cityscapes labelIds to trainIds (255 for void)."""
    return lookup_table(CITYSCAPES_LABEL_TO_TRAIN_ID)


def palette(colors) -> np.ndarray:
    """Return a 256 x 3 uint8 palette: class i gets colors[i], every other value black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(colors)] = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    return table
