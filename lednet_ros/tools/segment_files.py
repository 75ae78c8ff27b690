"""Segment image files or videos offline; write colour masks and overlays.

    lednet-segment frame.png clip.mp4 --out results/ [--weights w.safetensors]
                   [--input-size 960x720]

Images give <out>/<name>_mask.png and <name>_overlay.png; videos give <name>_mask.mp4 and
<name>_overlay.mp4. The smallest demonstration of the core: no ROS needed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from lednet_ros.arguments import parse_size
from lednet_ros.core.data.frame_sources import IMAGE_SUFFIXES
from lednet_ros.core.inference.checkpoint import CheckpointError, metrics_summary
from lednet_ros.core.inference.engine_choice import ENGINES, PRECISIONS
from lednet_ros.core.inference.segmenter import Segmenter
from lednet_ros.core.runtime.images import (
    DEFAULT_MAX_PIXELS, ImageFormatError, check_image_size, compressed_image_size,
)
from lednet_ros.core.runtime.pipeline import FrameSettings, Outputs, Pipeline


def check_pixels(path: Path, width: int, height: int, max_pixels: int, declared_by: str) -> None:
    """processing.check_image_size, naming the file and the option that sets the limit."""
    try:
        check_image_size(width, height, max_pixels, declared_by)
    except ImageFormatError as exc:
        raise ValueError(f"{path}: {exc}; --max-pixels sets the limit") from None


MASKS = Outputs(color_mask=True, overlay=True)


def segment_image(pipeline: Pipeline, path: Path, out_dir: Path, settings: FrameSettings
                  ) -> list[Path]:
    """Write <stem>_mask.png and <stem>_overlay.png for an image file."""
    max_pixels = settings.max_image_pixels
    data = np.fromfile(path, dtype=np.uint8)
    try:
        kind, width, height = compressed_image_size(data)
    except ImageFormatError:
        kind = None  # neither PNG nor JPEG: OpenCV's own limit applies
    if kind:
        check_pixels(path, width, height, max_pixels, f"the {kind} header")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: not a readable image")
    result = pipeline.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), settings, MASKS)
    written = [out_dir / f"{path.stem}_mask.png", out_dir / f"{path.stem}_overlay.png"]
    for target, image in zip(written, (result.color_mask, result.overlay)):
        cv2.imwrite(str(target), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return written


def segment_video(pipeline: Pipeline, path: Path, out_dir: Path, settings: FrameSettings,
                  max_frames: int = 0) -> list[Path]:
    """Write <stem>_mask.mp4 and <stem>_overlay.mp4 for a video (``max_frames`` 0: all)."""
    max_pixels = settings.max_image_pixels
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"{path}: not a readable video")
    check_pixels(path, int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                 int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), max_pixels, "the video's header")
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    written = [out_dir / f"{path.stem}_mask.mp4", out_dir / f"{path.stem}_overlay.mp4"]
    writers, frames = [], 0
    try:
        while not max_frames or frames < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            result = pipeline.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), settings, MASKS)
            if not writers:
                fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                writers = [cv2.VideoWriter(str(p), fourcc, fps, result.image_size)
                           for p in written]
            for writer, image in zip(writers, (result.color_mask, result.overlay)):
                writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            frames += 1
    finally:
        capture.release()
        for writer in writers:
            writer.release()
    if not frames:
        raise ValueError(f"{path}: no frames could be read")
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", type=Path, help="image files, folders or videos")
    parser.add_argument("--out", type=Path, default=Path("segmented"), help="output folder")
    parser.add_argument("--weights", type=Path, help="weights file (default: packaged weights)")
    parser.add_argument("--input-size", type=parse_size, help="network input WIDTHxHEIGHT")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="as the node's precision parameter (auto: the fastest whose labels "
                             "agree with fp32)")
    parser.add_argument("--engine", default="auto", choices=ENGINES,
                        help="as the node's engine parameter")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the mask")
    parser.add_argument("--max-frames", type=int, default=0, help="per video; 0 = all")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="refuse images and videos with more pixels per frame than this")
    args = parser.parse_args(argv)
    try:
        segmenter = Segmenter.from_weights(args.weights, device=args.device,
                                           precision=args.precision, engine=args.engine,
                                           input_size=args.input_size)
    except (CheckpointError, ValueError) as exc:
        print(f"lednet-segment: {exc}", file=sys.stderr)
        return 2
    print(f"{segmenter.describe()}; weights: {metrics_summary(segmenter.metadata)}")
    pipeline = Pipeline(segmenter)
    settings = FrameSettings(input_size=args.input_size or (0, 0), overlay_alpha=args.alpha,
                             max_image_pixels=args.max_pixels)
    args.out.mkdir(parents=True, exist_ok=True)
    files = []
    for item in args.inputs:
        files += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
            if item.is_dir() else [item]
    status = 0
    for path in files:
        started = time.perf_counter()
        try:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                written = segment_image(pipeline, path, args.out, settings)
            else:
                written = segment_video(pipeline, path, args.out, settings, args.max_frames)
        except (OSError, ValueError) as exc:
            print(f"lednet-segment: {exc}", file=sys.stderr)
            status = 1
            continue
        seconds = time.perf_counter() - started
        print(f"{path} -> {', '.join(str(p) for p in written)} ({seconds:.2f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
