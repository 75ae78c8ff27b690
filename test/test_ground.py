"""Ground maps (core.ground.mapping): synthetic scenes from a known camera, and real labels.

The scenes are rendered here independently of the module: each pixel's ray (built from the
camera's forward, right and down axes) is cast against the ground and boxes analytically, or, for
a distorted camera, the scene's outlines are drawn with cv2.projectPoints.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from lednet_ros.core.data.classes import CAMVID, CITYSCAPES, CLASS_SETS, cityscapes_label_id_lut
from lednet_ros.core.data.datasets import read_label
from lednet_ros.core.ground.camera_geometry import CameraPose, Intrinsics
from lednet_ros.core.ground.class_groups import DEFAULT_GROUPS, ClassGroups, default_class_groups
from lednet_ros.core.ground.clouds import (
    aligned_points, free_points, ground_points, obstacle_points,
)
from lednet_ros.core.ground.footprints import footprint_rows, footprint_run
from lednet_ros.core.ground.mapping import (
    POINT_DTYPE, XYZ_DTYPE, GridSpec, GroundMapper, build_lookup, costmap_picture,
)
from lednet_ros.core.ground.scores import GroundAgreement
from lednet_ros.core.ground.settings import GroundSettings

WIDTH, HEIGHT = 640, 480
INTRINSICS = Intrinsics(WIDTH, HEIGHT, 500.0, 500.0, 319.5, 239.5)
POSE = CameraPose(x=0.2, y=0.0, height=1.5, pitch=math.radians(10))
GRID = GridSpec()
SKY, ROAD, PAVEMENT, CAR = (CAMVID.names.index(n) for n in ("sky", "road", "pavement", "car"))
# pavement rectangle on the ground (x0, x1, y0, y1) and a box (x0, x1, y0, y1, height), metres
RECTANGLE = (4.0, 7.0, -1.0, 1.0)
BOX = (8.0, 9.0, -0.5, 0.5, 2.0)


def camvid_mapper() -> GroundMapper:
    return GroundMapper(default_class_groups("camvid", CAMVID.names))


def camera_axes(pose: CameraPose):
    """Forward, right and down unit vectors of the optical frame in the base frame."""
    cp, sp, cy, sy = (math.cos(pose.pitch), math.sin(pose.pitch), math.cos(pose.yaw),
                      math.sin(pose.yaw))
    forward = np.array([cp * cy, cp * sy, -sp])
    right = np.array([sy, -cy, 0.0])
    down = np.cross(forward, right)
    cr, sr = math.cos(pose.roll), math.sin(pose.roll)
    return forward, cr * right + sr * down, cr * down - sr * right


def pixel_rays(pose: CameraPose, intrinsics=INTRINSICS, size=(WIDTH, HEIGHT)):
    """(h, w, 3) base-frame rays of a ``size`` (w, h) image taken with ``intrinsics`` scaled."""
    scale = size[0] / intrinsics.width
    v, u = np.mgrid[0:size[1], 0:size[0]]
    x = ((u + 0.5) / scale - 0.5 - intrinsics.cx) / intrinsics.fx
    y = ((v + 0.5) / scale - 0.5 - intrinsics.cy) / intrinsics.fy
    forward, right, down = camera_axes(pose)
    return forward + x[..., None] * right + y[..., None] * down


def ray_box_distance(origin, rays, box):
    """Ray parameter of the first hit of a box (x0, x1, y0, y1, height) on z = 0; inf if none."""
    low = np.array([box[0], box[2], 0.0]) - origin
    high = np.array([box[1], box[3], box[4]]) - origin
    safe = np.where(np.abs(rays) < 1e-12, 1e-12, rays)
    near = np.minimum(low / safe, high / safe).max(axis=-1)
    far = np.maximum(low / safe, high / safe).min(axis=-1)
    return np.where((near <= far) & (far > 0), np.maximum(near, 0), np.inf)


def render(pose=POSE, rectangle=RECTANGLE, box=None, size=(WIDTH, HEIGHT)) -> np.ndarray:
    """CamVid labels: sky, road ground, a pavement rectangle on it and a car box standing on it."""
    rays = pixel_rays(pose, size=size)
    origin = np.array([pose.x, pose.y, pose.height])
    with np.errstate(divide="ignore"):
        to_ground = np.where(rays[..., 2] < 0, -pose.height / rays[..., 2], np.inf)
    labels = np.full(rays.shape[:2], SKY, dtype=np.uint8)
    labels[np.isfinite(to_ground)] = ROAD
    with np.errstate(invalid="ignore"):
        x, y = (origin[i] + to_ground * rays[..., i] for i in (0, 1))
        x0, x1, y0, y1 = rectangle
        labels[(x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)] = PAVEMENT
    if box is not None:
        labels[ray_box_distance(origin, rays, box) < to_ground] = CAR
    return labels


def cell_centres(maps):
    rows, cols = maps.counts.shape[1:]
    xs = maps.origin[0] + (np.arange(cols) + 0.5) * maps.resolution
    ys = maps.origin[1] + (np.arange(rows) + 0.5) * maps.resolution
    return np.meshgrid(xs, ys)  # each rows x cols


def rectangle_iou(maps, group="sidewalk", rectangle=RECTANGLE) -> float:
    x, y = cell_centres(maps)
    x0, x1, y0, y1 = rectangle
    truth = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    found = maps.group_grids()[group] >= 50
    return (truth & found).sum() / (truth | found).sum()


# ---- settings


@pytest.mark.parametrize("values, message", [
    ({"base_frame": ""}, "ground.base_frame is ''"),
    ({"points_step": 0}, "ground.points_step is 0"),
    ({"footprint_run": 0.6}, "ground.footprint_run is 0.6"),
    ({"footprint_confidence": -0.1}, "ground.footprint_confidence is -0.1"),
    ({"free_points_height": math.nan}, "ground.free_points_height is nan"),
])
def test_ground_settings_are_checked_once_where_they_are_built(values, message):
    with pytest.raises(ValueError, match=message):
        GroundSettings(**values)


# ---- class groups


def test_default_groups_resolve_for_their_class_sets():
    for name, spec in DEFAULT_GROUPS.items():
        groups = default_class_groups(name, CLASS_SETS[name].names)
        assert groups.names == tuple(spec["classes"])
        assert groups.is_obstacle == tuple(g in spec["obstacle_groups"] for g in groups.names)
        assert groups.is_free == tuple(g in spec["free_groups"] for g in groups.names)
        lut = groups.group_lut()
        assert lut[CLASS_SETS[name].names.index("sky")] == -1  # the sky is never on the ground
        assert lut[255] == -1
    camvid = default_class_groups("camvid", CAMVID.names)
    assert camvid.class_ids[camvid.names.index("drivable")] == (ROAD,)


@pytest.mark.parametrize("groups, obstacle, drivable, message", [
    ({"drivable": ["road", "tarmac"]}, (), (), r"'tarmac'.*valid names: \['sky', 'building'"),
    ({"a": ["road"], "b": ["car", "road"]}, (), (), r"'road' is in groups 'a' and 'b'"),
    ({"a": []}, (), (), r"group 'a' is \[\]"),
    ({"a": "road"}, (), (), r"group 'a' is 'road'"),
    ({"a": ["road"]}, ["things"], (), r"obstacle_groups .*'things'.*groups are \['a'\]"),
    ({"a": ["road"]}, (), ["roads"], r"free_groups .*'roads'"),
    ({"a": ["road"]}, "a", (), r"obstacle_groups 'a'.*list of group names"),
    ({"a": ["road"]}, ["a"], ["a"], r"'a' is in both obstacle_groups and free_groups"),
])
def test_bad_groups_are_refused_with_the_reason(groups, obstacle, drivable, message):
    with pytest.raises(ValueError, match=message):
        ClassGroups.build(CAMVID.names, groups, obstacle, drivable)


def test_unknown_class_set_has_no_default_groups():
    with pytest.raises(ValueError, match=r"'kitti'.*\['camvid', 'cityscapes'\]"):
        default_class_groups("kitti", CAMVID.names)


# ---- geometry


def test_pose_rotation_follows_rep103_and_round_trips():
    forward, right, down = camera_axes(POSE)
    rotation = POSE.rotation()
    np.testing.assert_allclose(rotation, np.stack([right, down, forward], axis=1), atol=1e-12)
    rng = np.random.default_rng(3)
    poses = [CameraPose(x=rng.normal(), y=rng.normal(), height=rng.uniform(0.2, 3),
                        roll=rng.uniform(-3, 3), pitch=rng.uniform(-1.5, 1.5),
                        yaw=rng.uniform(-3, 3)) for _ in range(20)]
    poses.append(CameraPose(height=1.0, pitch=math.pi / 2, yaw=0.3))  # straight down
    for pose in poses:
        back = CameraPose.from_matrix(pose.matrix())
        np.testing.assert_allclose(back.matrix(), pose.matrix(), atol=1e-9)


def test_pose_from_tf_quaternion():
    # camera_link -> camera_optical_frame as ROS drivers publish it: rpy (-pi/2, 0, -pi/2)
    pose = CameraPose.from_quaternion((-0.5, 0.5, -0.5, 0.5), (0.1, 0.0, 1.2))
    np.testing.assert_allclose([pose.x, pose.y, pose.height, pose.roll, pose.pitch, pose.yaw],
                               [0.1, 0.0, 1.2, 0.0, 0.0, 0.0], atol=1e-12)


def test_intrinsics_from_camera_info_and_scaled():
    k = [1000.0, 0, 639.5, 0, 1000.0, 479.5, 0, 0, 1]
    p = [990.0, 0, 640.0, 0, 0, 995.0, 480.0, 0, 0, 0, 1, 0]
    d = [-0.2, 0.05, 0, 0, 0]
    raw = Intrinsics.from_camera_info(k, d, p, "plumb_bob", 1280, 960)
    assert (raw.fx, raw.cy, raw.distortion) == (1000.0, 479.5, tuple(d))
    rectified = Intrinsics.from_camera_info(k, d, p, "plumb_bob", 1280, 960, rectified=True)
    assert (rectified.fx, rectified.fy, rectified.cx, rectified.cy) == (990, 995, 640, 480)
    assert rectified.distortion == ()
    assert hash(Intrinsics(1280, 960, 1000.0, 1000.0, 639.5, 479.5, "plumb_bob", d)) == hash(raw)
    half = raw.scaled(640, 480)
    assert (half.fx, half.cx, half.cy, half.distortion) == (500.0, 319.5, 239.5, tuple(d))


def test_footprint_rows_are_the_lowest_obstacle_pixel_per_column():
    mask = np.zeros((5, 4), dtype=bool)
    mask[1, 0] = mask[3, 0] = mask[4, 2] = True
    assert footprint_rows(mask).tolist() == [3, -1, 4, -1]


def test_a_footprint_needs_a_run_of_obstacle_pixels():
    mask = np.zeros((12, 4), dtype=bool)
    mask[2:6, 0] = True  # a run of 4 ...
    mask[9, 0] = True  # ... and one misread pixel below it
    mask[3:5, 1] = True  # a run of 2 only
    mask[8:12, 2] = True  # a run of 4 reaching the bottom row
    assert footprint_rows(mask).tolist() == [9, 4, 11, -1]
    assert footprint_rows(mask, min_run=3).tolist() == [5, -1, 11, -1]
    assert footprint_rows(mask, min_run=4).tolist() == [5, -1, 11, -1]
    assert footprint_rows(mask, min_run=5).tolist() == [-1, -1, -1, -1]
    with pytest.raises(ValueError, match="run of 0 pixels"):
        footprint_rows(mask, min_run=0)
    confidence = np.full(mask.shape, 250, dtype=np.uint8)
    confidence[2:6, 0] = 100  # column 0's run of 4 is unsure: its misread pixel is sure
    assert footprint_rows(mask, 1, confidence, 0.7).tolist() == [9, 4, 11, -1]
    assert footprint_rows(mask, 3, confidence, 0.7).tolist() == [-1, -1, 11, -1]
    confidence[3, 0] = 200  # one sure pixel makes the whole run sure
    assert footprint_rows(mask, 3, confidence, 0.7).tolist() == [5, -1, 11, -1]
    with pytest.raises(ValueError, match="footprint confidence 1.5"):
        footprint_rows(mask, 1, confidence, 1.5)
    assert [footprint_run(f, 360) for f in (0.0, 0.001, 0.03)] == [1, 1, 11]
    with pytest.raises(ValueError, match="footprint_run is 0.7 of the image height"):
        footprint_run(0.7, 360)


# ---- synthetic scenes


@pytest.mark.parametrize("label_size", [(WIDTH, HEIGHT), (320, 240)])
def test_ground_rectangle_lands_on_its_cells(label_size):
    maps = camvid_mapper().map(render(size=label_size), INTRINSICS, POSE)
    assert rectangle_iou(maps) >= 0.9
    grids = np.stack(list(maps.group_grids().values())).astype(int)
    observed = grids[0] >= 0
    assert (grids[:, ~observed] == -1).all() and observed.mean() > 0.3
    assert (np.abs(grids[:, observed].sum(axis=0) - 100) <= 1).all()  # percent, rounded
    assert maps.origin == (POSE.x, -GRID.width / 2)
    assert maps.counts.shape == (3,) + GRID.shape == (3, 100, 200)


@pytest.mark.parametrize("roll_deg, yaw_deg", [(3, 0), (0, 5), (-4, -6)])
def test_rolled_or_yawed_camera_still_finds_the_rectangle(roll_deg, yaw_deg):
    pose = CameraPose(x=0.2, height=1.5, pitch=math.radians(10), roll=math.radians(roll_deg),
                      yaw=math.radians(yaw_deg))
    assert rectangle_iou(camvid_mapper().map(render(pose), INTRINSICS, pose)) >= 0.9


def test_rays_above_the_horizon_never_mark_a_cell():
    mapper = camvid_mapper()
    labels = render()
    horizon = INTRINSICS.cy - INTRINSICS.fy * math.tan(POSE.pitch)  # row of the horizon
    above = np.arange(HEIGHT) <= horizon
    assert (labels[above] == SKY).all() and (labels[~above] != SKY).all()
    lookup = mapper.lookup(INTRINSICS, POSE, labels.shape, GRID)
    assert lookup.rows.min() > horizon
    labels[above] = PAVEMENT  # impossible pavement above the horizon: must not show
    labels[~above] = ROAD
    grids = mapper.map(labels, INTRINSICS, POSE).group_grids()
    assert grids["sidewalk"].max() <= 0 and grids["drivable"].max() == 100
    labels[above] = CAR  # an obstacle whose lowest pixel is above the horizon has no footprint
    grids = mapper.map(labels, INTRINSICS, POSE).group_grids()
    assert grids["obstacle"].max() <= 0


@pytest.mark.parametrize("box_height", [BOX[4], 0.6])
def test_box_marks_its_front_face_and_hides_what_is_behind(box_height):
    box = BOX[:4] + (box_height,)
    maps = camvid_mapper().map(render(box=box), INTRINSICS, POSE)
    grids, costmap = maps.group_grids(), maps.costmap()
    x, y = cell_centres(maps)
    resolution = maps.resolution
    obstacle = grids["obstacle"] > 0
    # every obstacle cell within two cells of the front face x = 8, |y| <= 0.5
    gap = np.hypot(x - box[0], np.clip(np.abs(y) - box[3], 0, None))
    assert obstacle.any() and gap[obstacle].max() <= 2 * resolution
    face = (np.abs(x - box[0]) <= 2 * resolution) & (np.abs(y) < box[3] - resolution)
    face_rows = np.unique(np.nonzero(face)[0])
    assert (obstacle & face)[face_rows].any(axis=1).mean() >= 0.9
    assert (costmap[obstacle] == 100).all()
    # behind the face, inside the rays through its edges (one cell in): unknown, even for the
    # low box whose top lets the camera see road farther on (pixels above an obstacle are left
    # out: the documented choice)
    shadow = ((x > box[0] + 2 * resolution)
              & (np.abs(y) < (box[3] - resolution) * (x - POSE.x) / (box[0] - POSE.x)))
    assert shadow.sum() > 500
    assert (costmap[shadow] == -1).all()
    assert all((grid[shadow] == -1).all() for grid in grids.values())
    # the road in front of the box is free, the pavement rectangle is not drivable
    assert (costmap[(x > 2.5) & (x < 3.8) & (np.abs(y) < 0.5)] == 0).all()
    assert (costmap[(x > 4.3) & (x < 6.7) & (np.abs(y) < 0.7)] == 100).all()


def test_lookup_is_built_once_and_rebuilt_when_an_input_changes():
    mapper = camvid_mapper()
    labels = render()
    first = mapper.map(labels, INTRINSICS, POSE)
    for _ in range(10):
        again = mapper.map(labels, INTRINSICS, CameraPose(x=0.2, height=1.5,
                                                           pitch=math.radians(10)))
    assert mapper.builds == 1
    np.testing.assert_array_equal(first.counts, again.counts)
    changes = [
        (INTRINSICS, CameraPose(x=0.2, height=1.6, pitch=math.radians(10)), labels, GRID),
        (INTRINSICS, POSE, labels, GridSpec(resolution=0.2)),
        (Intrinsics(WIDTH, HEIGHT, 510.0, 510.0, 319.5, 239.5), POSE, labels, GRID),
        (INTRINSICS, POSE, labels[::2, ::2].copy(), GRID),
    ]
    for builds, (intrinsics, pose, frame, grid) in enumerate(changes, start=2):
        mapper.map(frame, intrinsics, pose, grid)
        mapper.map(frame, intrinsics, pose, grid)
        assert mapper.builds == builds


def render_distorted(intrinsics: Intrinsics, pose: CameraPose, rectangle) -> np.ndarray:
    """Road everywhere, the rectangle's outline (1 cm steps) projected with cv2.projectPoints."""
    x0, x1, y0, y1 = rectangle
    steps = np.linspace(0, 1, 400)
    outline = np.concatenate([
        np.stack([x0 + (x1 - x0) * steps, np.full_like(steps, y0)], axis=1),
        np.stack([np.full_like(steps, x1), y0 + (y1 - y0) * steps], axis=1),
        np.stack([x1 - (x1 - x0) * steps, np.full_like(steps, y1)], axis=1),
        np.stack([np.full_like(steps, x0), y1 - (y1 - y0) * steps], axis=1),
    ])
    forward, right, down = camera_axes(pose)
    relative = np.concatenate([outline, np.zeros((len(outline), 1))], axis=1) - [
        pose.x, pose.y, pose.height]
    optical = relative @ np.stack([right, down, forward], axis=1)
    pixels, _ = cv2.projectPoints(optical, np.zeros(3), np.zeros(3), intrinsics.matrix(),
                                  np.array(intrinsics.distortion))
    labels = np.full((intrinsics.height, intrinsics.width), ROAD, dtype=np.uint8)
    polygon = np.round(pixels.reshape(-1, 2) * 16).astype(np.int32)  # 4 fractional bits
    cv2.fillPoly(labels, [polygon], PAVEMENT, shift=4)
    return labels


def test_distorted_camera_still_finds_the_rectangle():
    distorted = Intrinsics(WIDTH, HEIGHT, 500.0, 500.0, 319.5, 239.5, "plumb_bob",
                           (-0.3, 0.09, 0.001, -0.0005, 0.0))
    rectangle = (2.6, 4.0, -2.0, -0.6)  # near, to the right: where the distortion is strong
    labels = render_distorted(distorted, POSE, rectangle)
    assert rectangle_iou(camvid_mapper().map(labels, distorted, POSE), rectangle=rectangle) >= 0.9
    ignored = camvid_mapper().map(labels, INTRINSICS, POSE)  # the same labels, distortion ignored
    assert rectangle_iou(ignored, rectangle=rectangle) < 0.8


def test_ground_points_carry_position_colour_and_label():
    labels = render()
    maps = camvid_mapper().map(labels, INTRINSICS, POSE)
    every = ground_points(maps, labels, CAMVID.colors, step=1)
    points = ground_points(maps, labels, CAMVID.colors, step=4)
    assert points.dtype == POINT_DTYPE and 12 < len(every) / len(points) < 20
    assert (points["z"] == 0).all() and set(np.unique(points["label"])) == {ROAD, PAVEMENT}
    pavement = points[points["label"] == PAVEMENT]
    x0, x1, y0, y1 = RECTANGLE
    inside = ((pavement["x"] >= x0 - 0.05) & (pavement["x"] <= x1 + 0.05)
              & (pavement["y"] >= y0 - 0.05) & (pavement["y"] <= y1 + 0.05))
    assert inside.all()
    r, g, b = CAMVID.colors[PAVEMENT]
    assert (pavement["rgb"].view(np.uint32) == (r << 16 | g << 8 | b)).all()
    image = np.zeros(labels.shape + (3,), dtype=np.uint8)
    image[..., 1] = 7
    coloured = ground_points(maps, labels, CAMVID.colors, step=4, image=image)
    assert (coloured["rgb"].view(np.uint32) == 7 << 8).all()


def test_costmap_picture_puts_forward_up_and_left_left():
    costmap = np.full((3, 5), -1, dtype=np.int8)  # 3 cells across (y), 5 ahead (x)
    costmap[2, 4] = 100  # farthest ahead, leftmost
    costmap[0, 0] = 0  # nearest, rightmost
    picture = costmap_picture(costmap)
    assert picture.shape == (5, 3, 3) and picture.dtype == np.uint8
    assert picture[0, 0].max() < 60 and (picture[4, 2] == 255).all()
    assert (picture[2, 1] == 128).all()


# ---- bad values


@pytest.mark.parametrize("make, message", [
    (lambda: CameraPose(height=0.0), r"camera height 0.0 m; expected > 0"),
    (lambda: CameraPose(height=-1.5), r"camera height -1.5 m"),
    (lambda: CameraPose(height=1.5, pitch=math.nan), r"CameraPose.pitch is nan"),
    (lambda: GridSpec(resolution=0.0), r"grid resolution 0.0; expected a finite number > 0"),
    (lambda: GridSpec(resolution=-0.1), r"grid resolution -0.1"),
    (lambda: GridSpec(range=math.inf), r"grid range inf"),
    (lambda: GridSpec(width=1000.0), r"needs 10000 x 200 cells; expected at most 4096"),
    (lambda: Intrinsics(0, 0, 500.0, 500.0, 0.0, 0.0), r"image size 0x0"),
    (lambda: Intrinsics(WIDTH, HEIGHT, 0.0, 500.0, 0.0, 0.0), r"fx=0.0"),
    (lambda: Intrinsics(WIDTH, HEIGHT, 500.0, 500.0, math.inf, 0.0), r"Intrinsics.cx is inf"),
    (lambda: Intrinsics(WIDTH, HEIGHT, 500.0, 500.0, 1.0, 1.0, "equidistant", (0.1, 0, 0, 0)),
     r"distortion model 'equidistant' is not supported"),
    (lambda: Intrinsics(WIDTH, HEIGHT, 500.0, 500.0, 1.0, 1.0, "plumb_bob", (0.1,) * 6),
     r"6 distortion coefficients"),
    (lambda: Intrinsics(WIDTH, HEIGHT, 5e2, 5e2, 1.0, 1.0, "plumb_bob", (math.nan,) * 5),
     r"Intrinsics.distortion is nan"),
    (lambda: CameraPose.from_rotation(np.diag([1.0, 1.0, -1.0]), [0, 0, 1]),
     r"is not a rotation matrix"),
    (lambda: CameraPose.from_matrix(np.eye(3)), r"shape \(3, 3\); expected 4 x 4"),
    (lambda: CameraPose.from_quaternion((0, 0, 0, 0), (0, 0, 1)), r"quaternion \[0.0, 0.0"),
    (lambda: build_lookup(INTRINSICS, CameraPose(height=1.5, pitch=-math.radians(40)),
                          (HEIGHT, WIDTH), GRID), r"sees no ground.*pitch -0.69"),
    (lambda: build_lookup(INTRINSICS, CameraPose(height=1.5, pitch=0.2, yaw=math.pi),
                          (HEIGHT, WIDTH), GRID), r"no pixel of the 640x480 image lands"),
    (lambda: camvid_mapper().map(render().astype(np.int32), INTRINSICS, POSE),
     r"dtype int32; expected an h x w uint8"),
    (lambda: camvid_mapper().map(render(), INTRINSICS, POSE).costmap(0),
     r"min_obstacle_pixels 0"),
])
def test_bad_values_are_refused_with_the_reason(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# ---- real data


def test_cityscapes_labels_map_road_ahead_and_parked_cars(cityscapes_root):
    camera = json.loads((cityscapes_root / "camera.json").read_text())
    intrinsic, extrinsic = camera["intrinsic"], camera["extrinsic"]
    intrinsics = Intrinsics(*camera["image_size"], intrinsic["fx"], intrinsic["fy"],
                            intrinsic["u0"], intrinsic["v0"])
    pose = CameraPose(x=extrinsic["x"], y=extrinsic["y"], height=extrinsic["z"],
                      roll=extrinsic["roll"], pitch=extrinsic["pitch"], yaw=extrinsic["yaw"])
    label_ids = read_label(cityscapes_root / "gtFine" / "val" / "frankfurt"
                           / "frankfurt_000000_000576_gtFine_labelIds.png")
    train_ids = cv2.resize(cityscapes_label_id_lut()[label_ids], (1024, 512),
                           interpolation=cv2.INTER_NEAREST)
    mapper = GroundMapper(default_class_groups("cityscapes", CITYSCAPES.names))
    maps = mapper.map(train_ids, intrinsics, pose, GridSpec(range=25.0, width=20.0))
    costmap = maps.costmap()
    x, y = cell_centres(maps)
    ahead = costmap[(x > 10) & (x < 20) & (np.abs(y) < 1.0)]  # the bonnet hides x < 9 m
    assert (ahead == 0).mean() >= 0.98 and not (ahead == 100).any()
    cars = ground_points(maps, train_ids, CITYSCAPES.colors, step=1)
    cars = cars[cars["label"] == CITYSCAPES.names.index("car")]
    left, right = cars[cars["y"] > 0], cars[cars["y"] < 0]
    # parked on both sides: the row on the left from about 15 m, the SUV on the right from 9 m
    assert len(left) > 50 and len(right) > 50
    assert 12 < left["x"].min() < 18 and 2.5 < np.median(left["y"]) < 6
    assert 7 < right["x"].min() < 12 and -6 < np.median(right["y"]) < -2.5
    columns = ((cars["x"] - maps.origin[0]) / maps.resolution).astype(int)
    rows = ((cars["y"] - maps.origin[1]) / maps.resolution).astype(int)
    assert (costmap[rows, columns] == 100).all()


# ---- clouds for Nav2 (obstacle, free and aligned points)

def noisy(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Return ``labels`` with ``fraction`` of its road pixels misread as car, one by one."""
    rng = np.random.default_rng(seed)
    road = np.flatnonzero(labels == ROAD)
    noisy = labels.copy()
    noisy.ravel()[rng.choice(road, int(fraction * len(road)), replace=False)] = CAR
    return noisy


def test_obstacle_points_stand_on_the_box_front_face():
    maps = camvid_mapper().map(render(box=BOX), INTRINSICS, POSE)
    points = obstacle_points(maps, height=0.4)
    assert points.dtype == XYZ_DTYPE and len(points) > 20
    assert (points["z"] == np.float32(0.4)).all()
    # on the box's outline: its front face at x = 8 m, the outer columns on its sides
    assert (points["x"] > BOX[0] - 0.05).all() and (points["x"] < BOX[1]).all()
    assert np.abs(points["y"]).max() <= BOX[3] + 0.02
    assert (np.abs(points["x"] - BOX[0]) < 0.05).mean() > 0.9
    across = np.ptp(points["y"])  # the whole face, one point per image column
    assert across > 2 * BOX[3] - 0.1


def test_free_points_lie_on_the_road_in_front_of_the_box_and_none_behind():
    labels = render(box=BOX)
    maps = camvid_mapper().map(labels, INTRINSICS, POSE)
    points = free_points(maps, step=2, height=0.05)
    assert points.dtype == XYZ_DTYPE and (points["z"] == np.float32(0.05)).all()
    x, y = points["x"], points["y"]
    x0, x1, y0, y1 = RECTANGLE
    assert not ((x > x0 + 0.05) & (x < x1 - 0.05) & (y > y0 + 0.05) & (y < y1 - 0.05)).any()
    ahead = (np.abs(y) < BOX[3] - 0.05)
    assert ahead.sum() > 50 and x[ahead].max() < BOX[0]  # none behind the box
    assert (x[ahead] < x0).sum() > 20 and (x[ahead] > x1).sum() > 5  # before and after pavement
    assert x.max() > 15  # road beside the box, far ahead
    every = free_points(maps, step=1)
    assert 3 < len(every) / len(points) < 5


def test_aligned_points_one_per_pixel_nan_where_not_mapped():
    labels = render(box=BOX)
    maps = camvid_mapper().map(labels, INTRINSICS, POSE)
    points = aligned_points(maps)
    assert points.dtype == XYZ_DTYPE and points.shape == labels.shape
    finite = np.isfinite(points["x"])
    assert (np.isfinite(points["y"]) == finite).all()
    assert (np.isfinite(points["z"]) == finite).all()
    assert (points["z"][finite] == 0).all()
    assert not finite[labels == SKY].any()
    rows, cols = np.nonzero(finite & (labels == CAR))  # of the box, only its footprints
    assert len(rows) > 20 and (rows == maps.footprint[cols]).all()
    np.testing.assert_array_equal(finite, maps.mapped)
    road = finite & (labels == ROAD)
    rays = pixel_rays(POSE)[road]
    to_ground = -POSE.height / rays[:, 2]
    np.testing.assert_allclose(points["x"][road], POSE.x + to_ground * rays[:, 0], atol=1e-3)
    np.testing.assert_allclose(points["y"][road], POSE.y + to_ground * rays[:, 1], atol=1e-3)
    far = ~finite & (labels == ROAD)  # road beyond the grid's 20 m, or behind the box
    assert far.any()


def test_isolated_misread_pixels_neither_erase_columns_nor_invent_obstacles():
    """1% of the road misread as car, pixel by pixel.

    Measured: single-pixel footprints know 37% of the cells and mark 3% of the free ones;
    runs of 3% of the height know 99.6% and mark 0.2% (0.18% without noise: the run's depth
    rows of the box's outer columns land beside it).
    """
    clean = render(box=BOX)
    labels = noisy(clean, 0.01)
    mapper = camvid_mapper()
    reference = mapper.map(clean, INTRINSICS, POSE).costmap()
    known, free = reference >= 0, reference == 0
    single = mapper.map(labels, INTRINSICS, POSE).costmap()
    run = footprint_run(0.03, labels.shape[0])
    robust_maps = mapper.map(labels, INTRINSICS, POSE, min_run=run)
    robust = robust_maps.costmap()
    # one misread pixel low in a column hides the column behind it and marks an obstacle
    assert ((single >= 0) & known).sum() < 0.5 * known.sum()
    assert ((single == 100) & free).sum() > 0.01 * free.sum()
    assert ((robust >= 0) & known).sum() > 0.99 * known.sum()
    assert ((robust == 100) & free).sum() < 0.005 * free.sum()
    points = obstacle_points(robust_maps, height=0.4)
    expected = obstacle_points(mapper.map(clean, INTRINSICS, POSE), height=0.4)
    assert len(points) == len(expected)  # a misread pixel touching the box moves a point 8 cm
    np.testing.assert_allclose(points["x"], expected["x"], atol=0.1)


def test_ground_agreement_is_perfect_for_the_truth_and_drops_with_noise():
    clean = render(box=BOX)
    mapper = camvid_mapper()
    reference = mapper.map(clean, INTRINSICS, POSE)
    same = GroundAgreement()
    same.add(reference, mapper.map(clean, INTRINSICS, POSE))
    scores = same.percentages()
    assert all(scores[name] == 100.0 for name in (
        "cells known", "free IoU", "blocked IoU", "obstacle points precision",
        "obstacle points recall")), scores
    # road points in cells shared with the pavement's or the box's edge: 0.014% here
    assert scores["free points on blocked cells"] < 0.1
    labels = noisy(clean, 0.01)
    single, robust = GroundAgreement(), GroundAgreement()
    single.add(reference, mapper.map(labels, INTRINSICS, POSE))
    robust.add(reference, mapper.map(labels, INTRINSICS, POSE,
                                     min_run=footprint_run(0.03, HEIGHT)))
    single, robust = single.percentages(), robust.percentages()
    assert single["cells known"] < 50 < 99 < robust["cells known"]
    assert single["obstacle points precision"] < 50 < 95 < robust["obstacle points precision"]
    assert GroundAgreement().percentages()["free IoU"] is None


def test_a_footprint_marks_as_many_rows_as_its_run_needs():
    labels = render(box=BOX)
    maps = camvid_mapper().map(labels, INTRINSICS, POSE, min_run=5)
    mapped = maps.mapped & (labels == CAR)
    columns = np.flatnonzero(maps.footprint >= 0)
    per_column = mapped[:, columns].sum(axis=0)
    assert (per_column <= 5).all() and (per_column == 5).mean() > 0.9
    rows, cols = np.nonzero(mapped)
    assert ((rows <= maps.footprint[cols]) & (rows > maps.footprint[cols] - 5)).all()
    obstacle = maps.group_grids()["obstacle"] > 0
    x, _ = cell_centres(maps)
    assert (x[obstacle] >= BOX[0] - 0.2).all()  # behind the face only: its depth, not before it
