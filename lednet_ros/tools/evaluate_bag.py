r"""Offline evaluation of a bag: read it, segment every image, score against its ground truth.

    python -m lednet_ros.tools.evaluate_bag camvid_test_bag --out eval_offline
    python -m lednet_ros.tools.evaluate_bag my_bag --weights w.safetensors --input-size 960x720 \
        --image-topic /front/image_raw --ground-truth-topic /front/labels_gt

No ROS graph: the fast path for CI and tuning. Frames are segmented exactly as the node does
(Segmenter.segment at the same input size, engine and output resolution) and scored by the same
evaluation core as the live evaluator node, so both give the same numbers for the same frames.
Writes report.json, report.md and confusion.png to --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lednet_ros.arguments import parse_size
from lednet_ros.core.data.bags import (
    CAMERA_INFO_TOPIC, GROUND_TRUTH_TOPIC, IMAGE_TOPIC, BagError, BagTopics, read_frames,
)
from lednet_ros.core.evaluation.scoring import Evaluation, write_report
from lednet_ros.core.inference.checkpoint import CheckpointError
from lednet_ros.core.inference.engine_choice import ENGINES, PRECISIONS
from lednet_ros.core.inference.segmenter import Segmenter
from lednet_ros.core.runtime.pipeline import FrameSettings, Pipeline


def evaluate_bag(bag, segmenter: Segmenter, topics: BagTopics | None = None,
                 output_resolution: str = "original", stamps=None) -> Evaluation:
    """Score every image of ``bag`` (or only those whose stamp is in ``stamps``).

    ``topics`` defaults to ``BagTopics()``.
    """
    evaluation = Evaluation(segmenter.class_names)
    pipeline = Pipeline(segmenter)
    settings = FrameSettings(input_size=segmenter.input_size, output_resolution=output_resolution)
    for frame in read_frames(bag, topics):
        if stamps is not None and frame.stamp_ns not in stamps:
            continue
        if frame.kind == "image":
            labels = pipeline.process(frame.array, settings).labels
            evaluation.add_prediction(frame.stamp_ns, labels)
        else:
            evaluation.add_ground_truth(frame.stamp_ns, frame.array)
    return evaluation


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag", type=Path, help="a rosbag2 folder (mcap or sqlite3)")
    parser.add_argument("--weights", type=Path, default=None, help="default: packaged weights")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="as the node's precision parameter")
    parser.add_argument("--engine", default="auto", choices=ENGINES,
                        help="as the node's engine parameter")
    parser.add_argument("--input-size", type=parse_size, default=None,
                        help="network input WIDTHxHEIGHT (default: the weights' training size)")
    parser.add_argument("--output-resolution", choices=["original", "network"],
                        default="original")
    parser.add_argument("--image-topic", default=IMAGE_TOPIC)
    parser.add_argument("--ground-truth-topic", default=GROUND_TRUTH_TOPIC)
    parser.add_argument("--out", type=Path, default=Path("lednet_evaluation"))
    args = parser.parse_args(argv)
    try:
        segmenter = Segmenter.from_weights(args.weights, device=args.device,
                                           precision=args.precision, engine=args.engine,
                                           input_size=args.input_size)
        start = time.perf_counter()
        evaluation = evaluate_bag(args.bag, segmenter,
                                  BagTopics(args.image_topic, CAMERA_INFO_TOPIC,
                                            args.ground_truth_topic),
                                  args.output_resolution)
    except (BagError, CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    summary = evaluation.summary()
    summary["source"] = {"bag": str(args.bag), "mode": "offline",
                         "segmenter": segmenter.describe()}
    paths = write_report(args.out, summary, title=f"LEDNet offline evaluation of {args.bag}")
    frames = summary["frames"]
    miou = summary["mean_iou"]
    print(f"{frames['matched']} frames scored in {time.perf_counter() - start:.1f} s: mIoU "
          f"{'n/a' if miou is None else f'{100 * miou:.2f}%'}; "
          f"{frames['ground_truth_without_prediction']} ground truth without an image, "
          f"{frames['prediction_without_ground_truth']} images without ground truth")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
