r"""Score CamVid weights out of domain: on Cityscapes frames, their labels mapped to CamVid's.

    python -m lednet_ros.tools.evaluate_cityscapes --data-path ../shared/data/cityscapes_mini
    python -m lednet_ros.tools.evaluate_cityscapes --data-path cityscapes --split val \
        --weights adapted.safetensors --input-size 480x360

Cityscapes labelIds become CamVid's 11 classes (road, pavement, building + wall, fence, pole,
sign symbol = traffic light + sign, tree = vegetation, sky, pedestrian, bicyclist = rider +
motorcycle + bicycle, car = car + truck + bus + train); every other id is ignored. The rows below
--keep-top (the ego car's bonnet) are cut from image and labels before segmenting. Frames are
segmented as the node does (Segmenter.segment, labels at the image's size) and scored by the
package's one confusion matrix.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lednet_ros.arguments import parse_size
from lednet_ros.core.data.datasets import (
    CITYSCAPES_KEEP_TOP, CityscapesAsCamVid, DatasetError, open_split,
)
from lednet_ros.core.evaluation.scoring import score_dataset
from lednet_ros.core.inference.checkpoint import CheckpointError, metrics_summary
from lednet_ros.core.inference.engine_choice import ENGINES
from lednet_ros.core.inference.segmenter import Segmenter

SPLITS = {"train": "train", "val": "val", "all": "train+val"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", type=Path, required=True,
                        help="a Cityscapes folder (leftImg8bit/, gtFine/)")
    parser.add_argument("--split", choices=sorted(SPLITS), default="all",
                        help="all: train and val")
    parser.add_argument("--weights", type=Path, default=None,
                        help="CamVid-class weights (default: the packaged weights)")
    parser.add_argument("--input-size", type=parse_size, default=(480, 360),
                        help="network input WIDTHxHEIGHT (default 480x360)")
    parser.add_argument("--keep-top", type=float, default=CITYSCAPES_KEEP_TOP,
                        help="fraction of rows kept from the top (default 0.78125: Cityscapes' "
                             "rows above the bonnet, 800 of 1024)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--engine", default="auto", choices=ENGINES,
                        help="as the node's engine parameter")
    args = parser.parse_args(argv)
    if not 0.0 < args.keep_top <= 1.0:
        parser.error(f"--keep-top {args.keep_top}: expected a fraction in (0, 1]")
    try:
        dataset = open_split(CityscapesAsCamVid, args.data_path, SPLITS[args.split])
        segmenter = Segmenter.from_weights(args.weights, device=args.device, precision="fp32",
                                           engine=args.engine, input_size=args.input_size)
        if segmenter.class_names != list(CityscapesAsCamVid.class_set.names):
            raise ValueError(f"weights {args.weights} have the classes "
                             f"{segmenter.class_names}, not CamVid's 11")
        started = time.perf_counter()
        confusion = score_dataset(segmenter, dataset, args.keep_top)
    except (CheckpointError, DatasetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    print(f"{segmenter.describe()}\nweights: {args.weights or 'packaged'} "
          f"({metrics_summary(segmenter.metadata)})")
    print(f"{len(dataset)} frames of {args.data_path} ({args.split}), top {args.keep_top:.5g} "
          f"of the rows, in {seconds:.1f} s: mIoU {100 * confusion.mean_iou():.2f}%, "
          f"pixel accuracy {100 * confusion.pixel_accuracy():.2f}%")
    print("| class | IoU % |\n|---|---|")
    for name, iou in confusion.summary(segmenter.class_names)["per_class_iou"].items():
        print(f"| {name} | {'n/a' if iou is None else f'{100 * iou:.1f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
