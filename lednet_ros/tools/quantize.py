"""Quantize a weights file's graphs to INT8 (NNCF), once; the node then runs them (precision int8).

    python -m lednet_ros.tools.quantize [WEIGHTS] --camvid ../shared/data/camvid [--split train]
    python -m lednet_ros.tools.quantize WEIGHTS --frames DIR_OR_VIDEO [--count 100]

Calibration frames: the weights' training data (CamVid train for the packaged weights) or frames
of the robot's own camera (a folder of images or a video). The INT8 graphs go into the folder of
the weights' ONNX graphs (beside the weights, else the cache; core.inference.onnx_cache), where
Segmenter finds them. Needs ``nncf`` and ``openvino`` (pip install nncf openvino).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lednet_ros.core.inference.checkpoint import CheckpointError, file_sha256, read_metadata
from lednet_ros.core.inference.quantization import (
    DEFAULT_FRAMES, QuantizationError, calibration_frames, quantize_graphs,
)
from lednet_ros.core.inference.segmenter import default_weights_path


def source_frames(args) -> tuple[list, str]:
    """(calibration RGB frames, what they are) from --camvid or --frames."""
    if args.camvid is not None:
        from lednet_ros.core.data.datasets import CamVid

        frames = calibration_frames(CamVid(args.camvid, args.split), args.count)
        return frames, f"CamVid {args.split}, {len(frames)} frames spread evenly"
    from lednet_ros.core.data.frame_sources import FrameSource

    source, every = FrameSource(args.frames, loop=False), []
    while (frame := source.next()) is not None:
        every.append(frame)
    frames = calibration_frames(every, args.count)
    return frames, f"{args.frames.name}, {len(frames)} of {len(every)} frames spread evenly"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, nargs="?", default=default_weights_path(),
                        help="a LEDNet .safetensors weights file (default: the packaged one)")
    frames = parser.add_mutually_exclusive_group(required=True)
    frames.add_argument("--camvid", type=Path, help="a CamVid folder (SegNet layout)")
    frames.add_argument("--frames", type=Path, help="a folder of images or a video")
    parser.add_argument("--split", default="train", help="the CamVid split (default train)")
    parser.add_argument("--count", type=int, default=DEFAULT_FRAMES,
                        help=f"calibration frames (default {DEFAULT_FRAMES})")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count is {args.count}; expected >= 1")
    try:
        metadata = read_metadata(args.weights)
        frames, calibration = source_frames(args)
        from lednet_ros.core.inference.onnx_cache import exported_graphs

        started = time.perf_counter()
        folder = quantize_graphs(exported_graphs(args.weights), frames, metadata,
                                 file_sha256(args.weights), calibration)
    except (CheckpointError, QuantizationError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote the INT8 graphs of {args.weights} into {folder} "
          f"({calibration}; {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
