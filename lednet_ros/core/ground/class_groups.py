"""Class groups for the ground map: which classes of the weights are drivable, sidewalk, obstacle.

A group is a name with a list of class names of the loaded weights. Ground groups (every pixel lies
on the ground: drivable, sidewalk) are mapped pixel by pixel; obstacle groups (named in
``obstacle_groups``) are mapped only where they touch the ground. ``free_groups`` names the
groups a costmap treats as free. Classes in no group (sky, void) are not mapped at all. The names
are those of the node's parameters (groups.obstacle_groups, groups.free_groups).

    groups = default_class_groups("camvid", CAMVID.names)
    groups = ClassGroups.build(CAMVID.names, {"road": ["road"], "things": ["car", "pole"]},
                               obstacle_groups=["things"], free_groups=["road"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Per class set, as the node's parameters groups.classes.<name>, groups.obstacle_groups and
# groups.free_groups: groups (name -> class names), those that stand on the ground, those free.
DEFAULT_GROUPS = {
    "camvid": {
        "classes": {
            "drivable": ["road"],
            "sidewalk": ["pavement"],
            "obstacle": ["car", "pedestrian", "bicyclist", "pole", "fence", "sign symbol",
                         "building", "tree"],
        },
        "obstacle_groups": ["obstacle"],
        "free_groups": ["drivable"],
    },
    "cityscapes": {
        "classes": {
            "drivable": ["road"],
            "sidewalk": ["sidewalk"],
            "terrain": ["terrain"],
            "obstacle": ["building", "wall", "fence", "pole", "traffic light", "traffic sign",
                         "vegetation", "person", "rider", "car", "truck", "bus", "train",
                         "motorcycle", "bicycle"],
        },
        "obstacle_groups": ["obstacle"],
        "free_groups": ["drivable"],
    },
}

NO_GROUP = -1


@dataclass(frozen=True)
class ClassGroups:
    """Groups resolved against the weights' class names; build with ``ClassGroups.build``.

    Attributes:
        names: group names, in the order of the per-group outputs.
        class_ids: per group, the class indices it holds.
        is_obstacle: per group, True for an obstacle group.
        is_free: per group, True for a free group (costmap 0).
        num_classes: number of classes of the weights.
    """

    names: tuple[str, ...]
    class_ids: tuple[tuple[int, ...], ...]
    is_obstacle: tuple[bool, ...]
    is_free: tuple[bool, ...]
    num_classes: int

    @classmethod
    def build(cls, class_names: Sequence[str], groups: Mapping[str, Sequence[str]],
              obstacle_groups: Sequence[str] = (), free_groups: Sequence[str] = ()
              ) -> ClassGroups:
        """Resolve group definitions against ``class_names``.

        Raises:
            ValueError: a class the weights lack (listing the valid names), a class in two
                groups, an empty group, an obstacle or free group name that is not a group, or a
                group both obstacle and free.
        """
        class_names = list(class_names)
        owner: dict[str, str] = {}
        class_ids = []
        for group, members in groups.items():
            if isinstance(members, str) or not members:
                raise ValueError(f"group {group!r} is {members!r}; expected a non-empty list of "
                                 "class names")
            for name in members:
                if name not in class_names:
                    raise ValueError(f"group {group!r} names class {name!r}, which the weights "
                                     f"do not have; valid names: {class_names}")
                if name in owner:
                    raise ValueError(f"class {name!r} is in groups {owner[name]!r} and "
                                     f"{group!r}; expected each class in one group at most")
                owner[name] = group
            class_ids.append(tuple(class_names.index(name) for name in members))
        names = tuple(groups)
        for role, chosen in (("obstacle_groups", obstacle_groups),
                             ("free_groups", free_groups)):
            if isinstance(chosen, str):
                raise ValueError(f"{role} {chosen!r}; expected a list of group names")
            unknown = [g for g in chosen if g not in names]
            if unknown:
                raise ValueError(f"{role} {list(chosen)} name {unknown}, which are not groups; "
                                 f"groups are {list(names)}")
        both = [g for g in obstacle_groups if g in free_groups]
        if both:
            raise ValueError(f"{both[0]!r} is in both obstacle_groups and free_groups; expected "
                             "obstacles not to be free")
        return cls(names, tuple(class_ids), tuple(g in obstacle_groups for g in names),
                   tuple(g in free_groups for g in names), len(class_names))

    def group_lut(self) -> np.ndarray:
        """Return a 256-entry int16 table: class id -> group index, NO_GROUP (-1) for no group."""
        lut = np.full(256, NO_GROUP, dtype=np.int16)
        for index, ids in enumerate(self.class_ids):
            lut[list(ids)] = index
        return lut

    def class_table(self, per_group) -> np.ndarray:
        """Return a 256-entry bool table: class id -> ``per_group[its group]``, False for none.

        E.g. ``class_table(groups.is_obstacle)`` marks the classes of obstacle groups.
        """
        return np.array(tuple(per_group) + (False,))[self.group_lut()]


def default_class_groups(class_set_name: str, class_names: Sequence[str]) -> ClassGroups:
    """Return the DEFAULT_GROUPS of a class set, resolved against the weights' ``class_names``.

    Raises:
        ValueError: an unknown class set name (listing the known ones), or class names that do
            not match the defaults.
    """
    if class_set_name not in DEFAULT_GROUPS:
        raise ValueError(f"no default class groups for class set {class_set_name!r}; expected "
                         f"one of {sorted(DEFAULT_GROUPS)}")
    spec = DEFAULT_GROUPS[class_set_name]
    return ClassGroups.build(class_names, spec["classes"], spec["obstacle_groups"],
                             spec["free_groups"])
