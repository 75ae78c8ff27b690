r"""Score the ground outputs of weights on labelled frames: against the same outputs of the labels.

    python -m lednet_ros.tools.evaluate_ground --data-path ../shared/data/cityscapes_mini
    python -m lednet_ros.tools.evaluate_ground --data-path cityscapes --split val \
        --camera cityscapes/camera/val/frankfurt/frankfurt_000000_000294_camera.json \
        --weights adapted.safetensors --footprint-run 0.03

Each frame's predicted labels and its true labels (Cityscapes labelIds mapped to CamVid's 11
classes, the rows below --keep-top cut: the bonnet) are mapped on the same ground grid with the
node's default class groups and the camera of --camera (a Cityscapes camera file: intrinsics
fx, fy, u0, v0 for the full frame; extrinsics x, y, z, roll, pitch, yaw, pitch positive looking
down). Footprints and free space as the node makes them (--footprint-run,
--footprint-confidence, --free-confidence, --free-margin, --mirror-check), and, as the node
does, no free space from a frame the perception health (core.runtime.health, its defaults
with the weights' unsure thresholds) flags (--no-health: off).
--degrade degrades every frame first (core.data.degradations; ``frozen``: the frame checked
again after 1 + health.frozen_frames copies of it). Scores (core.ground.scores): costmap cells
known, free and blocked IoU, free cells truly blocked, obstacle cells blocked within one cell,
obstacle points within 0.5 m, free points on blocked cells; and the frames flagged.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2

from lednet_ros.arguments import parse_size
from lednet_ros.core.data.datasets import (
    CITYSCAPES_KEEP_TOP, CityscapesAsCamVid, DatasetError, keep_top, open_split,
)
from lednet_ros.core.ground.camera_geometry import CameraPose, Intrinsics
from lednet_ros.core.data.degradations import DEGRADATIONS, degrade
from lednet_ros.core.ground.class_groups import default_class_groups
from lednet_ros.core.ground.footprints import (
    DEFAULT_FOOTPRINT_CONFIDENCE, DEFAULT_FOOTPRINT_RUN, footprint_run,
)
from lednet_ros.core.ground.mapping import (
    DEFAULT_FREE_CONFIDENCE, DEFAULT_FREE_MARGIN, GridSpec, GroundMapper,
)
from lednet_ros.core.ground.scores import GroundAgreement
from lednet_ros.core.ground.settings import GroundSettings
from lednet_ros.core.inference.checkpoint import CheckpointError
from lednet_ros.core.inference.engine_choice import ENGINES
from lednet_ros.core.inference.segmenter import Segmenter
from lednet_ros.core.runtime.pipeline import FrameSettings, Outputs, Pipeline
from lednet_ros.core.runtime.health import HealthMonitor, settings_for_weights
from lednet_ros.tools.evaluate_cityscapes import SPLITS


def read_cityscapes_camera(path: Path, rows_kept: int) -> tuple[Intrinsics, CameraPose]:
    """(intrinsics of the top ``rows_kept`` rows of a 2048-wide frame, pose) of a camera file.

    Raises:
        ValueError: a file that is not a Cityscapes camera file, naming what is missing.
    """
    try:
        camera = json.loads(path.read_text())
        inner, outer = camera["intrinsic"], camera["extrinsic"]
        width = camera.get("image_size", [2048, 1024])[0]
        intrinsics = Intrinsics(width, rows_kept, inner["fx"], inner["fy"], inner["u0"],
                                inner["v0"])
        pose = CameraPose(x=outer["x"], y=outer["y"], height=outer["z"], roll=outer["roll"],
                          pitch=outer["pitch"], yaw=outer["yaw"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"camera file {path}: {error!r}; expected a Cityscapes camera file "
                         "(intrinsic fx, fy, u0, v0; extrinsic x, y, z, roll, pitch, yaw)"
                         ) from error
    return intrinsics, pose


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", type=Path, required=True,
                        help="a Cityscapes folder (leftImg8bit/, gtFine/)")
    parser.add_argument("--camera", type=Path, default=None,
                        help="a Cityscapes camera file (default: DATA_PATH/camera.json)")
    parser.add_argument("--split", choices=sorted(SPLITS), default="all")
    parser.add_argument("--weights", type=Path, default=None,
                        help="CamVid-class weights (default: the packaged weights)")
    parser.add_argument("--input-size", type=parse_size, default=(480, 360),
                        help="network input WIDTHxHEIGHT (default 480x360)")
    parser.add_argument("--labels-size", type=parse_size, default=(480, 360),
                        help="size both label images are mapped at (default 480x360)")
    parser.add_argument("--footprint-run", type=float, default=DEFAULT_FOOTPRINT_RUN,
                        help="as the node's ground.footprint_run (default "
                             f"{DEFAULT_FOOTPRINT_RUN}; 0: single pixels)")
    parser.add_argument("--footprint-confidence", type=float,
                        default=DEFAULT_FOOTPRINT_CONFIDENCE,
                        help="as the node's ground.footprint_confidence (default "
                             f"{DEFAULT_FOOTPRINT_CONFIDENCE}; 0: off)")
    parser.add_argument("--free-confidence", type=float, default=DEFAULT_FREE_CONFIDENCE,
                        help="as the node's ground.free_confidence (default "
                             f"{DEFAULT_FREE_CONFIDENCE}; 0: off)")
    parser.add_argument("--free-margin", type=int, default=DEFAULT_FREE_MARGIN,
                        help=f"as the node's ground.free_margin (default {DEFAULT_FREE_MARGIN}; "
                             "0: off)")
    parser.add_argument("--mirror-check", action=argparse.BooleanOptionalAction,
                        default=GroundSettings().mirror_check,
                        help="as the node's ground.mirror_check: free only where the mirrored "
                             "frame is as sure of the same label (default on)")
    parser.add_argument("--health", action=argparse.BooleanOptionalAction, default=True,
                        help="no free space from frames the health check flags (default on)")
    parser.add_argument("--degrade", choices=[*DEGRADATIONS, "frozen"], default=None,
                        help="degrade every frame first")
    parser.add_argument("--resolution", type=float, default=0.2, help="m per cell (0.2)")
    parser.add_argument("--range", type=float, default=20.0, help="m ahead (20)")
    parser.add_argument("--width", type=float, default=20.0, help="m across (20)")
    parser.add_argument("--keep-top", type=float, default=CITYSCAPES_KEEP_TOP,
                        help="fraction of rows kept from the top (default: above the bonnet)")
    parser.add_argument("--engine", default="auto", choices=ENGINES)
    args = parser.parse_args(argv)
    try:
        dataset = open_split(CityscapesAsCamVid, args.data_path, SPLITS[args.split])
        segmenter = Segmenter.from_weights(args.weights, precision="fp32", engine=args.engine,
                                           input_size=args.input_size)
        pipeline, frame = Pipeline(segmenter), FrameSettings(tuple(args.input_size))
        grid = GridSpec(resolution=args.resolution, range=args.range, width=args.width)
        mapper = GroundMapper(default_class_groups("camvid", segmenter.class_names))
        size = tuple(args.labels_size)
        rows_kept = keep_top(dataset.load(0)[1], args.keep_top).shape[0]  # every frame's
        camera, pose = read_cityscapes_camera(args.camera or args.data_path / "camera.json",
                                              rows_kept)
        camera, run = camera.scaled(*size), footprint_run(args.footprint_run, size[1])
        agreement, started, health, flagged = GroundAgreement(), time.perf_counter(), \
            settings_for_weights(segmenter.metadata.metrics), 0
        for index in range(len(dataset)):
            image, truth = (keep_top(a, args.keep_top) for a in dataset.load(index))
            if args.degrade in DEGRADATIONS:
                image = degrade(image, args.degrade, seed=index)
            _, labels, confidence, agreed, _ = pipeline.segment_batch(
                [image], frame, [Outputs(confidence=True, mirror_confidence=args.mirror_check)])[0]
            monitor = HealthMonitor(health)
            for _ in range(1 + health.frozen_frames if args.degrade == "frozen" else 1):
                report = monitor.check(image, None, labels, confidence,
                                       len(segmenter.class_names))
            withhold = args.health and health.withholds_free(report.level)
            flagged += withhold
            predicted, confidence, truth = (
                cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)
                for image in (labels, confidence, truth))
            if agreed is not None:
                agreed = cv2.resize(agreed, size, interpolation=cv2.INTER_NEAREST)
            agreement.add(mapper.map(truth, camera, pose, grid),
                          mapper.map(predicted, camera, pose, grid, run, confidence,
                                     args.footprint_confidence, args.free_confidence,
                                     args.free_margin, withhold,
                                     mirror_confidence=agreed))
    except (CheckpointError, DatasetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{segmenter.describe()}\nweights: {args.weights or 'packaged'}; {len(dataset)} "
          f"frames ({args.split}), labels mapped at {args.labels_size[0]}x{args.labels_size[1]}, "
          f"footprint run {args.footprint_run} of the height ({run} px), footprint confidence "
          f"{args.footprint_confidence}, free confidence {args.free_confidence}, free margin "
          f"{args.free_margin} cells, mirror check {'on' if args.mirror_check else 'off'}, grid "
          f"{args.range:g} m x {args.width:g} m at {args.resolution:g} m, degraded: "
          f"{args.degrade or 'no'}, in {time.perf_counter() - started:.1f} s")
    print(f"frames with free space withheld (health {'on' if args.health else 'off'}): "
          f"{flagged} of {len(dataset)}")
    print("| score | % |\n|---|---|")
    for name, value in agreement.percentages().items():
        print(f"| {name} | {'n/a' if value is None else f'{value:.1f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
