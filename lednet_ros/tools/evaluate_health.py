r"""How often the perception health flags frames: clean ones (crying wolf) and degraded ones.

    python -m lednet_ros.tools.evaluate_health --data-path ../shared/data/camvid --split test
    python -m lednet_ros.tools.evaluate_health --data-path ../shared/data/cityscapes_mini \
        --dataset cityscapes --degrade fog --degrade frozen

Each frame of the split, clean and degraded in each of the ways of core.data.degradations (and
``frozen``: the same frame 1 + health.frozen_frames times, the last one checked), is segmented as
the node does (labels and confidence at the network input size) and checked by
core.runtime.health with its defaults. Printed per degradation: frames, how many reach WARN and
ERROR, how many would get no free space in the ground outputs (withhold_free_at), the most
common reasons, and the check's time per frame.

--record writes the clean frames' unsure shares into the weights file's metadata as its health
reference (core.runtime.health.reference_record): the node then sets health.unsure_warn and
health.unsure_error from it. Record it on clean frames of the weights' own test split, never on
frames they will be judged by, e.g. for the packaged weights:

    python -m lednet_ros.tools.evaluate_health --data-path ../shared/data/camvid --split test \
        --degrade clean --record
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections import Counter
from pathlib import Path

from lednet_ros.arguments import parse_size
from lednet_ros.core.data.datasets import (
    CamVid, CityscapesAsCamVid, DatasetError, open_split, split_names,
)
from lednet_ros.core.data.degradations import DEGRADATIONS, degrade
from lednet_ros.core.inference.checkpoint import CheckpointError
from lednet_ros.core.inference.engine_choice import ENGINES
from lednet_ros.core.inference.onnx_cache import rewrite_metadata
from lednet_ros.core.inference.segmenter import Segmenter, default_weights_path
from lednet_ros.core.runtime.health import (
    HEALTH_REFERENCE, HealthMonitor, HealthSettings, reference_record, settings_for_weights,
    unsure_thresholds,
)

FROZEN = "frozen"
VARIANTS = ("clean", *DEGRADATIONS, FROZEN)
READERS = {"camvid": CamVid, "cityscapes": CityscapesAsCamVid}


def reason_kind(reason: str) -> str:
    """Return the check a reason comes from: its words before the colon."""
    return reason.split(":", 1)[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", type=Path, required=True)
    parser.add_argument("--dataset", choices=sorted(READERS), default="camvid")
    parser.add_argument("--split", default="test", help="e.g. test, val, train+val (default test)")
    parser.add_argument("--degrade", action="append", choices=VARIANTS,
                        help="clean or a degradation (repeatable; default: all)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="weights (default: the packaged weights)")
    parser.add_argument("--input-size", type=parse_size, default=None,
                        help="network input WIDTHxHEIGHT (default: the weights' own)")
    parser.add_argument("--engine", default="auto", choices=ENGINES)
    parser.add_argument("--every", type=int, default=1, help="every Nth frame (default 1)")
    parser.add_argument("--record", action="store_true",
                        help="write the clean frames' unsure shares into the weights' metadata "
                             "as their health reference (needs clean among --degrade)")
    args = parser.parse_args(argv)
    if args.record and "clean" not in (args.degrade or VARIANTS):
        parser.error("--record measures the clean frames: add --degrade clean")
    try:
        split_names(args.split)
        dataset = open_split(READERS[args.dataset], args.data_path, args.split)
        segmenter = Segmenter.from_weights(args.weights, precision="fp32", engine=args.engine,
                                           input_size=args.input_size)
    except (CheckpointError, DatasetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    settings = settings_for_weights(segmenter.metadata.metrics)  # the node's defaults for them
    indices = range(0, len(dataset), max(1, args.every))
    print(f"{segmenter.describe()}\n{len(indices)} frames of {args.data_path} ({args.split}); "
          f"free space withheld from {settings.withhold_free_at.upper()} on")
    print("| frames | clean or degraded | WARN | ERROR | free withheld | reasons | check ms |")
    print("|---|---|---|---|---|---|---|")
    clean_shares = []
    for variant in args.degrade or VARIANTS:
        levels, withheld, reasons, spent = Counter(), 0, Counter(), 0.0
        for index in indices:
            rgb = dataset.load(index)[0]
            monitor = HealthMonitor(settings)  # each frame its own stream
            image = rgb if variant in ("clean", FROZEN) else degrade(rgb, variant, seed=index)
            labels, confidence = segmenter.predict(image, confidence=True)
            repeats = 1 + settings.frozen_frames if variant == FROZEN else 1
            for _ in range(repeats):
                started = time.perf_counter()
                report = monitor.check(image, None, labels, confidence,
                                       len(segmenter.class_names))
                spent += time.perf_counter() - started
            if variant == "clean":
                clean_shares.append(report.figures["unsure share"])
            levels[report.level_name] += 1
            withheld += settings.withholds_free(report.level)
            reasons.update({reason_kind(r) for r in report.reasons})
        checks = len(indices) * (1 + settings.frozen_frames if variant == FROZEN else 1)
        common = ", ".join(f"{name} {count}" for name, count in reasons.most_common(3)) or "-"
        print(f"| {len(indices)} | {variant} | {levels['warn']} | {levels['error']} | "
              f"{withheld} ({100 * withheld / len(indices):.1f}%) | {common} | "
              f"{1000 * spent / checks:.2f} |")
    if args.record:
        record_reference(args.weights or default_weights_path(), segmenter, clean_shares,
                         settings, f"{args.dataset} {args.split}"
                         + (f", every {args.every}th frame" if args.every > 1 else ""))
    return 0


def record_reference(weights, segmenter: Segmenter, shares, settings: HealthSettings,
                     frames: str) -> None:
    """Write the health reference into ``weights``' metadata and say what the node will use."""
    width, height = segmenter.input_size
    reference = reference_record(shares, settings.unsure_confidence,
                                 f"{frames} ({len(shares)} frames at {width}x{height})")
    metadata = segmenter.metadata
    metadata = dataclasses.replace(metadata, metrics={**metadata.metrics,
                                                      HEALTH_REFERENCE: reference})
    sha = rewrite_metadata(weights, metadata)
    warn, error, source = unsure_thresholds(metadata.metrics, settings.unsure_confidence)
    print(f"recorded in {weights} (SHA-256 now {sha[:12]}...): {reference}; the node's "
          f"health.unsure_warn / unsure_error: {warn:g} / {error:g} ({source})")


if __name__ == "__main__":
    sys.exit(main())
