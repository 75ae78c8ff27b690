"""Write the ONNX graphs of a weights file into a folder (onnx_cache runs this in a child).

    python -m lednet_ros.tools.export_onnx WEIGHTS.safetensors --output-dir DIR

One graph per set of outputs the ONNX engines run (labels; labels and confidence; logits), with
dynamic batch, height and width.
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
    parser.add_argument("--output-dir", type=Path, required=True, help="where the graphs go")
    args = parser.parse_args(argv)
    try:
        model, _ = load_weights(args.weights)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from lednet_ros.core.inference.onnx_export import write_graphs

    write_graphs(model, args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
