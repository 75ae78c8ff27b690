r"""Adapt weights to a robot's own camera from unlabelled frames; write an ordinary weights file.

    python -m lednet_ros.tools.adapt --source drive1.mp4 --source frames/ --output mine.safetensors
    python -m lednet_ros.tools.adapt --source my_bag --topic /front/image_raw/compressed \
        --method self-training --frames 90 --output mine.safetensors

--frames frames are taken spread evenly over the sources (videos, image folders, rosbag2 folders
read on --topic: sensor_msgs/Image or CompressedImage) and over each one's length. Methods:
bn recomputes the BatchNorm statistics of the shallower half of the network on them (seconds;
--bn-depth); entropy (the default) then fits the BatchNorms' affine weights to confident
predictions that keep the classes' shares (two minutes); self-training instead fine-tunes on the
adapted model's confident pixels and recomputes them again (minutes). The output records how it
was made (method, sources, base weights' SHA-256, input size, settings) and no mIoU; it is
written only when everything succeeded. Load it like any weights (the node's `weights`
parameter, --weights of the tools).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from lednet_ros.arguments import attribute_docs, parse_size
from lednet_ros.core.adaptation import DEFAULT_METHOD
from lednet_ros.core.adaptation.methods import (
    METHODS, MIN_FRAMES, AdaptationError, AdaptationSettings, adapt, adapted_metadata,
    settings_record,
)
from lednet_ros.core.data.bags import IMAGE_TOPIC
from lednet_ros.core.data.frame_sampling import FrameSamplingError, Source, gather_frames
from lednet_ros.core.inference.checkpoint import (
    CheckpointError, file_sha256, load_weights, save_weights,
)
from lednet_ros.core.inference.onnx_export import write_graphs_beside
from lednet_ros.core.inference.segmenter import check_input_size, default_weights_path


def progress_bar(description: str):
    """Return a tqdm bar on stderr and a Progress callback (done, total) driving it."""
    from tqdm import tqdm

    bar = tqdm(desc=description, unit="step", file=sys.stderr, leave=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, update


# The settings a user sets here; their help is AdaptationSettings' own text.
ADAPTATION_OPTIONS = ("bn_prior", "bn_depth", "entropy_epochs", "entropy_lr",
                      "entropy_marginal", "epochs", "lr", "threshold", "class_quantile",
                      "refresh_labels", "teacher_momentum", "freeze_bn", "class_balanced",
                      "flip_labels", "micro_batch", "checkpoint_segments")


def add_adaptation_arguments(group) -> None:
    """Add an option per field of ADAPTATION_OPTIONS, with its text and default."""
    defaults, texts = AdaptationSettings(), attribute_docs(AdaptationSettings)
    for name in ADAPTATION_OPTIONS:
        default, help_text = getattr(defaults, name), texts[name].rstrip(".")
        kind = argparse.BooleanOptionalAction if isinstance(default, bool) else None
        group.add_argument(f"--{name.replace('_', '-')}", default=default,
                           **({"action": kind} if kind else {"type": type(default)}),
                           help=f"{help_text} (default {default})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, action="append", required=True,
                        help="a video, an image folder or a rosbag2 folder (repeatable)")
    parser.add_argument("--topic", default=IMAGE_TOPIC,
                        help=f"image topic of the bag sources (default {IMAGE_TOPIC})")
    parser.add_argument("--output", type=Path, required=True, help="the .safetensors to write")
    parser.add_argument("--weights", type=Path, default=None,
                        help="the weights to adapt (default: the packaged weights)")
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                        help=f"bn, entropy or self-training (default {DEFAULT_METHOD}: "
                             "docs/weights.md)")
    parser.add_argument("--frames", type=int, default=90, help="frames in all (default 90)")
    parser.add_argument("--input-size", type=parse_size, default=None,
                        help="network input WIDTHxHEIGHT (default: the weights' own)")
    add_adaptation_arguments(parser.add_argument_group(
        "method settings (bn_prior, bn_depth: every method; entropy_*: entropy; micro_batch, "
        "checkpoint_segments: entropy and self-training; the others: self-training; defaults "
        "measured in docs/weights.md)"))
    parser.add_argument("--seed", type=int, default=AdaptationSettings.seed,
                        help=attribute_docs(AdaptationSettings)["seed"].rstrip("."))
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    weights = args.weights or default_weights_path()
    if args.output.suffix != ".safetensors":
        parser.error(f"--output {args.output}: expected a .safetensors file name")
    if args.output.resolve() == Path(weights).resolve():
        parser.error(f"--output {args.output} is the base weights file; write a new file")
    if args.frames < MIN_FRAMES:
        parser.error(f"--frames {args.frames}: adaptation needs at least {MIN_FRAMES}")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    try:
        model, metadata = load_weights(weights)
        input_size = check_input_size(args.input_size or metadata.input_size)
        settings = AdaptationSettings(
            **{name: getattr(args, name) for name in ADAPTATION_OPTIONS}, seed=args.seed)
        sources = [Source(path, args.topic) for path in args.source]
        bar, update = progress_bar("reading frames")
        with bar:
            frames, records = gather_frames(sources, args.frames, input_size, update)
        bar, update = progress_bar(f"adapting ({args.method})")
        with bar:
            adapted = adapt(model, metadata, frames, method=args.method, input_size=input_size,
                            settings=settings, progress=update)
        meta = adapted_metadata(metadata, method=args.method, sources=records,
                                base_sha256=file_sha256(weights), base_path=str(weights),
                                input_size=input_size,
                                settings=settings_record(args.method, settings))
        save_weights(args.output, adapted, meta)
        graphs = write_graphs_beside(adapted, args.output)
    except (AdaptationError, CheckpointError, FrameSamplingError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    taken = ", ".join(f"{r['path']}: {r['frames']}" for r in records)
    print(f"wrote {args.output} ({args.method}, {len(frames)} frames: {taken}; "
          f"{time.perf_counter() - started:.0f} s) and its ONNX graphs {graphs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
