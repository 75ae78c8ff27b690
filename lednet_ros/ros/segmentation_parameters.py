"""The segmentation node's parameters: every one in one table, and the settings made from them.

From PARAMETERS come the declarations (with descriptors), `--help`, docs/parameters.md (a test
compares them) and the checks of config/lednet.yaml and the README. The values turn into the
core's settings objects, each checked once where it is built: :func:`frame_settings`,
:func:`ground_settings`, :func:`health_settings`, :func:`class_groups`.

Class groups live under ``groups.``: fixed names (``groups.names``, ``groups.obstacle_groups``,
``groups.free_groups``) and, under ``groups.classes.``, one list per group the user names, so a
group's name can never collide with a fixed one.
"""

from __future__ import annotations

import math
import re

from lednet_ros.core.adaptation import DEFAULT_METHOD, METHODS
from lednet_ros.core.ground.camera_geometry import CameraPose
from lednet_ros.core.ground.class_groups import DEFAULT_GROUPS, ClassGroups
from lednet_ros.core.ground.depth import POINTS_FRAMES, SOURCES
from lednet_ros.core.ground.footprints import MAX_FOOTPRINT_RUN
from lednet_ros.core.ground.mapping import MAX_FREE_MARGIN, GridSpec
from lednet_ros.core.ground.settings import MAX_POINTS_STEP, GroundSettings
from lednet_ros.core.inference.engine_choice import ENGINES, PRECISIONS
from lednet_ros.core.inference.segmenter import MAX_INPUT_SIDE, OUTPUT_RESOLUTIONS
from lednet_ros.core.runtime.health import WITHHOLD_CHOICES, HealthSettings, unsure_thresholds
from lednet_ros.core.runtime.pipeline import MAX_GRID, FrameSettings
from lednet_ros.ros.parameters import RELIABILITY, ConfigurationError, Spec, declare

ANGLE = (-math.pi, math.pi)
CAMVID_GROUPS = DEFAULT_GROUPS["camvid"]
GROUND = GroundSettings()  # the ground.* defaults are the core's
FRAME = FrameSettings()  # and so are the frame parameters' defaults
HEALTH = HealthSettings()  # and the health.* ones
GROUP_CLASSES = "groups.classes.<name>"
POSE_AXES = ("x", "y", "height", "roll", "pitch", "yaw")
CAMERA_POSE = "<camera>.ground.camera_<axis>"

PARAMETERS = {
    # ---- model (read-only)
    "weights": Spec("", "Path of a LEDNet weights file (.safetensors with metadata); '' = the "
                    "packaged CamVid weights. Restart to change.", read_only=True),
    "device": Spec("auto", "Inference device: auto (cuda if available, else cpu), cpu, cuda or "
                   "cuda:N.", read_only=True),
    "precision": Spec(PRECISIONS[0], "Arithmetic precision: auto (the fastest whose labels "
                      "agree with fp32), fp32 (exact), fp16 (CUDA), bf16 (CPUs with native "
                      "bf16) or int8 (the weights' INT8 graphs: python -m lednet_ros.tools."
                      "quantize).", read_only=True, choices=PRECISIONS),
    "engine": Spec("auto", "Inference engine: auto (the fastest measured for this device and "
                   "CPU), or one of the listed engines.", read_only=True, choices=ENGINES),
    # ---- each frame (runtime): FrameSettings
    "input_width": Spec(FRAME.input_size[0],
                        "Network input width in pixels; 0 = the weights' training width.",
                        integers=(0, MAX_INPUT_SIDE)),
    "input_height": Spec(FRAME.input_size[1],
                         "Network input height in pixels; 0 = the weights' training height.",
                         integers=(0, MAX_INPUT_SIDE)),
    "output_resolution": Spec(FRAME.output_resolution,
                              "Size of labels, colour mask and overlay: original "
                              "(the input image's) or network (the network input's).",
                              choices=OUTPUT_RESOLUTIONS),
    "overlay_alpha": Spec(FRAME.overlay_alpha,
                          "Weight of the colour mask in the overlay, 0 (image only) to 1 "
                          "(mask only).", floats=(0.0, 1.0)),
    "grid_rows": Spec(FRAME.grid[0], "Rows of the occupancy region grid.", integers=(1, MAX_GRID)),
    "grid_cols": Spec(FRAME.grid[1],
                      "Columns of the occupancy region grid.", integers=(1, MAX_GRID)),
    "max_image_pixels": Spec(FRAME.max_image_pixels,
                             "Frames with more pixels (width x height) are "
                             "rejected.", integers=(1, 2**31 - 1)),
    "no_frames_timeout": Spec(5.0, "Seconds without a frame while the image topic has "
                              "publishers before warning once (0 disables).",
                              floats=(0.0, 3600.0)),
    # ---- cameras and topics (read-only)
    "cameras": Spec((), "Names of the cameras this node segments, through one model, their "
                    "waiting frames in one batch: inputs <name>/image, <name>/camera_info, "
                    "<name>/depth, outputs ~/<name>/...; [] = one camera on image, camera_info, "
                    "~/labels, ...", read_only=True),
    CAMERA_POSE: Spec(0.0, "Per camera of cameras, its pose for the ground outputs (<axis>: x, "
                      "y, height, roll, pitch, yaw); default: the ground.camera_<axis> value."),
    "publish_class_topics": Spec(False, "Also publish each class's pixel fraction on "
                                 "~/occupancy/<class> (std_msgs/Float32).", read_only=True),
    "input_compressed": Spec(False, "Subscribe to image/compressed (sensor_msgs/CompressedImage) "
                             "instead of image.", read_only=True),
    "qos_reliability": Spec("best_effort", "Reliability of the image and camera_info "
                            "subscriptions: best_effort (sensor data) or reliable.",
                            read_only=True, choices=tuple(RELIABILITY)),
    "qos_depth": Spec(1, "History depth of the image and camera_info subscriptions.",
                      read_only=True, integers=(1, 1000)),
    # ---- the ~/adapt service (runtime)
    "adapt.frames": Spec(90, "Frames the ~/adapt service gathers from the stream before it "
                         "adapts the weights to this camera (every adapt.check_every-th is held "
                         "back for the check).", integers=(2, 10000)),
    "adapt.method": Spec(DEFAULT_METHOD, "How ~/adapt adapts: bn (BatchNorm statistics, seconds, "
                         "1.2 GB), entropy (bn, then the BatchNorms' affine weights made "
                         "confident, the classes' shares kept; two minutes, 1.6 GB) or "
                         "self-training (minutes, 1.5 GB); "
                         "peaks measured at 480x360, docs/weights.md.", choices=METHODS),
    "adapt.bn_prior": Spec(0.0, "Weight of the loaded weights' own BatchNorm statistics mixed "
                           "into the camera's (0: the camera's alone).", floats=(0.0, 1.0)),
    "adapt.bn_depth": Spec(0.5, "Share of the BatchNorms, from the input, whose statistics "
                           "~/adapt takes from the camera; the deeper keep the loaded weights' "
                           "(1: all).", floats=(0.01, 1.0)),
    "adapt.check_every": Spec(5, "Every N-th gathered frame is held back: the adapted weights "
                              "replace the ones in use only when surer, as consistent and as "
                              "spread over the classes on those frames (0: no check, always "
                              "swapped in).", integers=(0, 100)),
    "adapt.timeout": Spec(60.0, "Seconds ~/adapt waits for its frames before it gives up.",
                          floats=(1.0, 3600.0)),
    "adapt.output": Spec("", "Where ~/adapt writes the adapted weights (.safetensors, with their "
                         "ONNX graphs beside them) for the next start ('' = not written)."),
    # ---- class groups of the ground outputs (read-only; defaults from the weights' class set)
    "groups.names": Spec(tuple(CAMVID_GROUPS["classes"]), "Names of the class groups mapped on "
                         "the ground (letters, digits, _), in the order of the ~/grid/<group> "
                         "topics.", read_only=True, by_weights="class set"),
    GROUP_CLASSES: Spec((), "Classes (of the weights) in group <name>, one list per name in "
                        "groups.names; CamVid: " + "; ".join(
                            f"{name} [{', '.join(classes)}]"
                            for name, classes in CAMVID_GROUPS["classes"].items()) + ".",
                        read_only=True, by_weights="class set"),
    "groups.obstacle_groups": Spec(tuple(CAMVID_GROUPS["obstacle_groups"]), "Groups that stand "
                                   "on the ground: only their ground contact is mapped; cells "
                                   "behind them stay unknown.", read_only=True,
                                   by_weights="class set"),
    "groups.free_groups": Spec(tuple(CAMVID_GROUPS["free_groups"]), "Groups where the costmap "
                               "is free (0); other mapped groups cost 100.", read_only=True,
                               by_weights="class set"),
    # ---- ground outputs: GroundSettings
    "ground.base_frame": Spec(GROUND.base_frame,
                              "Frame of the grids and points (the robot's base, "
                              "REP-103: x forward, y left, z up).", read_only=True),
    "ground.camera_x": Spec(GROUND.pose.x, "Camera position ahead of base_frame's origin (m).",
                            floats=(-100.0, 100.0)),
    "ground.camera_y": Spec(GROUND.pose.y, "Camera position left of base_frame's origin (m).",
                            floats=(-100.0, 100.0)),
    "ground.camera_height": Spec(GROUND.pose.height, "Camera height above the ground (m).",
                                 floats=(0.01, 100.0)),
    "ground.camera_roll": Spec(GROUND.pose.roll, "Camera roll (rad).", floats=ANGLE),
    "ground.camera_pitch": Spec(GROUND.pose.pitch, "Camera pitch (rad, positive = looking down).",
                                floats=ANGLE),
    "ground.camera_yaw": Spec(GROUND.pose.yaw,
                              "Camera yaw (rad, positive = turned left).", floats=ANGLE),
    "ground.use_tf": Spec(GROUND.use_tf, "Take the camera pose from TF (base_frame <- the image's "
                          "frame_id) instead of the camera_* parameters; needs tf2_ros.",
                          read_only=True),
    "ground.rectified": Spec(GROUND.rectified,
                             "The image is rectified (image_rect): use camera_info's P "
                             "and no distortion; else K and D.", read_only=True),
    "ground.resolution": Spec(GROUND.grid.resolution, "Grid cell size (m).", floats=(0.01, 10.0)),
    "ground.range": Spec(GROUND.grid.range,
                         "Grid length ahead of the camera (m).", floats=(0.1, 1000.0)),
    "ground.width": Spec(GROUND.grid.width, "Grid width across, centred on the camera (m).",
                         floats=(0.1, 1000.0)),
    "ground.points_step": Spec(GROUND.points_step,
                               "Every Nth pixel (in both directions) goes into "
                               "~/ground_points and ~/free_points.",
                               integers=(1, MAX_POINTS_STEP)),
    "ground.footprint_run": Spec(GROUND.footprint_run, "Shortest vertical run of obstacle "
                                 "pixels that makes a footprint, as a fraction of the label "
                                 "image's height (0: a single pixel); shorter runs below it "
                                 "count as nothing; its bottom rows, as many, mark the obstacle.",
                                 floats=(0.0, MAX_FOOTPRINT_RUN)),
    "ground.footprint_confidence": Spec(GROUND.footprint_confidence, "Confidence (softmax "
                                        "maximum, 0..1) the most confident pixel of a "
                                        "footprint's run reaches (0: any run).",
                                        floats=(0.0, 1.0)),
    "ground.free_confidence": Spec(GROUND.free_confidence, "Confidence (softmax maximum, "
                                   "0..1) a pixel of a free group needs to count as free "
                                   "space; less sure ones are left unknown (0: any).",
                                   floats=(0.0, 1.0)),
    "ground.free_margin": Spec(GROUND.free_margin, "Cells around a cell that holds anything "
                               "but free groups (a kerb, an obstacle) that are not free either "
                               "(unknown; 0: off).", integers=(0, MAX_FREE_MARGIN)),
    "ground.mirror_check": Spec(GROUND.mirror_check, "Free space only where the labels equal "
                                "those of the mirrored frame, which joins the network's pass "
                                "(about twice its time; docs/health.md); elsewhere unknown."),
    "ground.source": Spec(GROUND.source, "What the ground outputs are made from: auto (depth "
                          "where the paired depth image has it, flat ground elsewhere), depth "
                          "(pixels without depth unknown; no output without a paired depth "
                          "image) or flat (the flat-ground model alone).", choices=SOURCES),
    "ground.max_height": Spec(GROUND.max_height, "With depth: points higher than this above the "
                              "ground (m) are overhangs, left out of grids and clouds.",
                              floats=(0.01, 100.0)),
    "ground.points_frame": Spec(GROUND.points_frame, "Frame of ~/semantic_points: depth (the "
                                "depth image's optical frame) or base (ground.base_frame).",
                                choices=POINTS_FRAMES),
    "ground.obstacle_points_height": Spec(GROUND.obstacle_points_height,
                                          "Height (m) of ~/obstacle_points above the "
                                          "ground: inside the marking source's "
                                          "min/max_obstacle_height.", floats=(-10.0, 10.0)),
    "ground.free_points_height": Spec(GROUND.free_points_height,
                                      "Height (m) of ~/free_points above the ground: "
                                      "inside the clearing source's min/max_obstacle_height.",
                                      floats=(-10.0, 10.0)),
    # ---- depth input (read-only): core.ground.depth
    "depth.max_skew": Spec(0.05, "Largest stamp difference (s) between a colour frame and the "
                           "depth image paired with it.", floats=(0.0, 1.0), read_only=True),
    # ---- perception health (runtime): HealthSettings, docs/health.md
    "health.withhold_free_at": Spec(HEALTH.withhold_free_at, "From which health level the "
                                    "ground outputs mark as unknown what they would mark free "
                                    "(no free cells, no clearing points): warn, error, or "
                                    "never.", choices=WITHHOLD_CHOICES),
    "health.dark_luma": Spec(HEALTH.dark_luma, "Mean luma (0-255) below which a frame is too "
                             "dark (ERROR).", floats=(0.0, 255.0)),
    "health.glare_share": Spec(HEALTH.glare_share, "Share of saturated pixels above which a "
                               "frame is washed out (ERROR).", floats=(0.0, 1.0)),
    "health.min_contrast": Spec(HEALTH.min_contrast, "Luma standard deviation over mean luma "
                                "below which a frame shows nothing to tell apart: fog, glare "
                                "(ERROR).", floats=(0.0, 10.0)),
    "health.max_flat_share": Spec(HEALTH.max_flat_share, "Share of flat 10-pixel blocks (of a "
                                  "160-wide copy) above which a frame is featureless: a "
                                  "covered lens, darkness (ERROR).", floats=(0.0, 1.0)),
    "health.min_sharpness": Spec(HEALTH.min_sharpness, "Laplacian over luma standard deviation "
                                 "below which a frame is blurred (WARN).", floats=(0.0, 10.0)),
    "health.max_grain": Spec(HEALTH.max_grain, "Lower quartile of the Laplacian's magnitude "
                             "(luma levels) above which a frame is noisy (WARN).",
                             floats=(0.0, 255.0)),
    "health.frozen_frames": Spec(HEALTH.frozen_frames, "Frames in a row with the same pixels "
                                 "that make the stream frozen (ERROR); 0 = off.",
                                 integers=(0, 1000)),
    "health.unsure_confidence": Spec(HEALTH.unsure_confidence, "Confidence (softmax maximum) "
                                     "below which a pixel is unsure.", floats=(0.0, 1.0)),
    "health.unsure_warn": Spec(HEALTH.unsure_warn, "Share of unsure pixels above which the "
                               "network is unsure of the frame (WARN); default: the highest share "
                               "on the weights' clean reference frames + 0.05 (their metadata; "
                               "evaluate_health --record), 0.35 without one.",
                               floats=(0.0, 1.0), by_weights="health reference"),
    "health.unsure_error": Spec(HEALTH.unsure_error, "Share of unsure pixels above which the "
                                "frame is an ERROR; default: that highest share + 0.20, 0.5 "
                                "without a reference.", floats=(0.0, 1.0),
                                by_weights="health reference"),
}
FIXED_PARAMETERS = {name: spec for name, spec in PARAMETERS.items() if not spec.by_weights}
# Names of earlier releases: a params file that still uses one stops the node, naming the new one.
RENAMED = {"groups.obstacles": "groups.obstacle_groups", "costmap.drivable": "groups.free_groups"}
GROUP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def frame_settings(values: dict) -> FrameSettings:
    """FrameSettings from parameter values (name -> value); ValueError naming a bad one."""
    return FrameSettings(
        input_size=(values["input_width"], values["input_height"]),
        output_resolution=values["output_resolution"],
        overlay_alpha=values["overlay_alpha"],
        grid=(values["grid_rows"], values["grid_cols"]),
        max_image_pixels=values["max_image_pixels"],
    )


def ground_settings(values: dict) -> GroundSettings:
    """GroundSettings from the ``ground.*`` values; ValueError naming a bad one."""
    ground = {name[len("ground."):]: value for name, value in values.items()
              if name.startswith("ground.")}
    pose = CameraPose(**{name: ground.pop(f"camera_{name}")
                         for name in ("x", "y", "height", "roll", "pitch", "yaw")})
    grid = GridSpec(**{name: ground.pop(name) for name in ("resolution", "range", "width")})
    return GroundSettings(pose=pose, grid=grid, **ground)


def camera_names(names) -> list[str]:
    """Return the cameras' names; [''] (one camera, topics without a prefix) for none.

    Raises:
        ConfigurationError: a name that is no topic name token, or one given twice.
    """
    for name in names:
        if not GROUP_NAME.fullmatch(name):
            raise ConfigurationError(f"cameras holds {name!r}; expected names of letters, "
                                     "digits and _ that start with a letter")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"cameras names a camera twice: {list(names)}")
    return list(names) or [""]


def camera_pose_parameters(name: str, values: dict) -> dict[str, Spec]:
    """Return the ``<name>.ground.camera_<axis>`` specs (defaults: ``ground.camera_<axis>``)."""
    return {f"{name}.ground.camera_{axis}": Spec(
        values[f"ground.camera_{axis}"], PARAMETERS[CAMERA_POSE].description,
        floats=PARAMETERS[f"ground.camera_{axis}"].floats) for axis in POSE_AXES}


def declare_cameras(node, values: dict) -> dict[str, object]:
    """Declare each named camera's pose parameters; return their values."""
    declared = {}
    for name in filter(None, camera_names(values["cameras"])):
        declared |= declare(node, camera_pose_parameters(name, values))
    return declared


def camera_ground_settings(values: dict, camera: str) -> GroundSettings:
    """GroundSettings of ``camera`` ('' for a single one): its own pose, the rest shared."""
    if camera:
        values = values | {f"ground.camera_{axis}": values[f"{camera}.ground.camera_{axis}"]
                           for axis in POSE_AXES}
    return ground_settings(values)


def health_settings(values: dict) -> HealthSettings:
    """HealthSettings from the ``health.*`` values; ValueError naming a bad one."""
    return HealthSettings(**{name[len("health."):]: value for name, value in values.items()
                             if name.startswith("health.")})


def group_defaults(dataset: str) -> dict[str, list[str]]:
    """Return the class-group parameters' defaults for a class set (empty lists for none)."""
    spec = DEFAULT_GROUPS.get(dataset, {"classes": {}, "obstacle_groups": [], "free_groups": []})
    return {"groups.names": list(spec["classes"]),
            "groups.obstacle_groups": list(spec["obstacle_groups"]),
            "groups.free_groups": list(spec["free_groups"]),
            **{f"groups.classes.{name}": list(classes)
               for name, classes in spec["classes"].items()}}


def group_parameters(names: list[str]) -> dict[str, Spec]:
    """Return the specs of ``groups.classes.<name>`` per group name; ValueError for a bad name."""
    for name in names:
        if not GROUP_NAME.fullmatch(name):
            raise ValueError(f"groups.names holds {name!r}; expected names of letters, digits "
                             "and _ that start with a letter")
    return {GROUP_CLASSES.replace("<name>", name): PARAMETERS[GROUP_CLASSES] for name in names}


def weights_defaults(metadata, unsure_confidence: float) -> tuple[dict, str]:
    """Return the defaults that depend on the weights, and where the unsure thresholds come from.

    The ``groups.*`` of their class set; ``health.unsure_warn`` and ``health.unsure_error`` from
    their health reference (core.runtime.health.unsure_thresholds).
    """
    warn, error, source = unsure_thresholds(metadata.metrics, unsure_confidence)
    return (group_defaults(metadata.dataset)
            | {"health.unsure_warn": warn, "health.unsure_error": error}), source


def declare_by_weights(node, metadata, unsure_confidence: float) -> tuple[dict, str]:
    """Declare the parameters whose defaults depend on the weights (weights_defaults).

    Returns their values and where the unsure thresholds' defaults come from.
    """
    defaults, source = weights_defaults(metadata, unsure_confidence)
    values = declare(node, {n: s for n, s in PARAMETERS.items() if s.by_weights}, defaults)
    return values | declare(node, group_parameters(values["groups.names"]), defaults), source


def class_groups(values: dict, class_names) -> ClassGroups:
    """ClassGroups from the ``groups.*`` values; ValueError naming a bad group or class."""
    names = values["groups.names"]
    return ClassGroups.build(
        list(class_names), {name: values[f"groups.classes.{name}"] for name in names},
        obstacle_groups=values["groups.obstacle_groups"],
        free_groups=values["groups.free_groups"])


def refuse_renamed(given: list[str], group_names: list[str]) -> None:
    """Stop on a parameter given under an earlier release's name (``given``: undeclared names).

    ``group_names``: the groups now declared; ``groups.<one of them>`` was the old layout.

    Raises:
        ConfigurationError: ``groups.obstacles``, ``costmap.drivable`` or ``groups.<name>``,
            naming what it is called now.
    """
    for name in given:
        new = RENAMED.get(name)
        if new is None and name.startswith("groups.") and name[len("groups."):] in group_names:
            new = f"groups.classes.{name[len('groups.'):]}"
        if new is not None:
            raise ConfigurationError(f"parameter {name} is now called {new}; rename it in the "
                                     "parameters file or launch file")
