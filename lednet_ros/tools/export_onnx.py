"""Write the ONNX graphs of a weights file into a folder (onnx_cache runs this in a child).

    python -m lednet_ros.tools.export_onnx WEIGHTS.safetensors [--output-dir DIR]

One graph per set of outputs the ONNX engines run (labels; labels and confidence; logits), with
dynamic batch, height and width, and a record of the weights they come from. By default they go
beside the weights (``WEIGHTS.graphs/``), where the node finds them without exporting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lednet_ros.core.inference.checkpoint import CheckpointError, load_weights


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, help="a LEDNet .safetensors weights file")
    parser.add_argument("--output-dir", type=Path,
                        help="where the graphs go (default: WEIGHTS.graphs beside the weights)")
    args = parser.parse_args(argv)
    try:
        model, _ = load_weights(args.weights)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from lednet_ros.core.inference.onnx_cache import graphs_beside
    from lednet_ros.core.inference.onnx_export import OnnxExportError, write_graphs

    try:
        folder = write_graphs(model, args.output_dir or graphs_beside(args.weights), args.weights)
    except OnnxExportError as error:
        print(f"error: {args.weights}: {error}", file=sys.stderr)
        return 1
    print(f"wrote the ONNX graphs of {args.weights} into {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
