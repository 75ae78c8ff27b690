"""Export a training run's best weights to the file the node loads, and optionally to ONNX.

    python training/export.py runs/cityscapes --output lednet_cityscapes.safetensors \
        --onnx lednet_cityscapes.onnx [--check-image frame.png]

The weights file (safetensors + metadata: classes, colours, normalisation, input size, recipe,
mIoU) is checked strictly, copied, and read back. The ONNX graph has dynamic batch, height and
width, carries the same metadata (``lednet_ros`` in its metadata_props), and is checked against
PyTorch with ONNX Runtime on the same input at the weights' input size and at half of it: the
export fails when the labels disagree on more than --max-label-disagreement of the pixels.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lednet_ros.core.inference.checkpoint import (  # noqa: E402
    METADATA_KEY, CheckpointError, WeightsMetadata, load_weights, metrics_summary, save_weights,
)
from lednet_ros.core.inference.onnx_cache import graphs_beside  # noqa: E402
from lednet_ros.core.inference.model import LEDNet  # noqa: E402
from lednet_ros.core.inference.network_io import labels_from_logits, preprocess  # noqa: E402
from lednet_ros.core.inference.onnx_export import export_onnx, write_graphs_beside  # noqa: E402

MAX_LABEL_DISAGREEMENT = 0.001


class ExportError(RuntimeError):
    """An export that must not be used; the message names the file and what is wrong."""


@dataclass
class OnnxCheck:
    """ONNX Runtime against PyTorch on one input size."""

    width: int
    height: int
    max_abs_diff: float
    label_disagreement: float  # fraction of pixels whose argmax differs

    def __str__(self) -> str:
        return (f"{self.width}x{self.height}: max |logit difference| {self.max_abs_diff:.2e}, "
                f"labels differ on {100 * self.label_disagreement:.4f}% of pixels")


def source_weights(source: Path) -> Path:
    """Return the weights file of ``source``: a run directory means its best.safetensors."""
    return source / "best.safetensors" if source.is_dir() else source


def check_trained(path: Path, meta: WeightsMetadata) -> None:
    """Check that the weights record how they were trained and what they reached."""
    miou = meta.metrics.get("mean_iou")
    if not meta.recipe or not isinstance(miou, (int, float)) or not math.isfinite(miou):
        raise ExportError(f"{path}: metadata lacks the training recipe or a finite mean_iou "
                          f"(recipe {sorted(meta.recipe)}, metrics {sorted(meta.metrics)}); "
                          "export the best.safetensors (or final.safetensors) that "
                          "training/train.py writes")


def evaluate_split(model: LEDNet, meta: WeightsMetadata, data_path: Path, split: str) -> dict:
    """Compute the weights' metrics on a split of their dataset, segmented as the node does.

    Frames at full size, the Segmenter at the weights' input size, labels back at the frame's size.
    """
    from lednet_ros.core.data.datasets import DATASETS, DatasetError
    from lednet_ros.core.evaluation.metrics import ConfusionMatrix
    from lednet_ros.core.inference.segmenter import Segmenter

    if meta.dataset not in DATASETS:
        raise ExportError(f"weights of dataset {meta.dataset!r}: no reader to evaluate them "
                          f"(known: {', '.join(DATASETS)})")
    try:
        dataset = DATASETS[meta.dataset](data_path, split)
    except DatasetError as exc:
        raise ExportError(str(exc)) from None
    segmenter = Segmenter(model, meta, device="cpu", engine="torch")
    matrix = ConfusionMatrix(meta.num_classes)
    sizes = set()
    for index in range(len(dataset)):
        rgb, label = dataset.load(index)
        sizes.add(f"{rgb.shape[1]}x{rgb.shape[0]}")
        matrix.update(label, segmenter.segment(rgb))
    return {"split": f"{split} ({len(dataset)} frames, {', '.join(sorted(sizes))})",
            **matrix.summary(meta.class_names)}


def export_weights(model: LEDNet, meta: WeightsMetadata, output: Path) -> Path:
    """Write the weights and their metadata, then read them back and compare every tensor.

    The ONNX graphs the node's CPU engines run go beside them (onnx_cache.graphs_beside).
    """
    save_weights(output, model, meta)
    reloaded, reloaded_meta = load_weights(output)
    expected = model.state_dict()
    for key, tensor in reloaded.state_dict().items():
        if not torch.equal(tensor, expected[key]):
            raise ExportError(f"{output}: tensor {key} differs from the source after writing")
    if reloaded_meta != meta:
        raise ExportError(f"{output}: metadata differs from the source after writing")
    write_graphs_beside(reloaded, output)
    return output


def export_onnx_file(model: LEDNet, meta: WeightsMetadata, output: Path) -> Path:
    """ONNX with dynamic batch, height and width, and the weights' metadata in metadata_props."""
    import onnx

    output.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, str(output), sample_size=tuple(meta.input_size[::-1]))
    graph = onnx.load(str(output))
    onnx.helper.set_model_props(graph, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(graph)
    onnx.save(graph, str(output))
    return output


def check_sizes(meta: WeightsMetadata) -> list[tuple[int, int]]:
    """Return the weights' input size and half of it (a multiple of 8): two dynamic shapes."""
    width, height = meta.input_size
    half = (max(8, width // 16 * 8), max(8, height // 16 * 8))
    return [(width, height)] + ([half] if half != (width, height) else [])


def check_image(path: Path | None, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Return the RGB image to compare on: a file, or smooth random colours of ``size`` (w, h)."""
    if path is not None:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ExportError(f"{path}: not a readable image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    coarse = np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    return cv2.resize(coarse, size, interpolation=cv2.INTER_CUBIC)


def compare_onnx(model: LEDNet, meta: WeightsMetadata, onnx_path: Path, rgb: np.ndarray,
                 sizes, max_disagreement: float = MAX_LABEL_DISAGREEMENT) -> list[OnnxCheck]:
    """Run PyTorch and ONNX Runtime on the same preprocessed input at each (width, height).

    Raises:
        ExportError: labels disagree on more than ``max_disagreement`` of the pixels at a size.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model = model.eval().float().cpu()
    checks = []
    for width, height in sizes:
        x = preprocess(rgb, (width, height), meta.mean, meta.std)
        with torch.inference_mode():
            expected = model(x)
        (logits,) = session.run(None, {"image": x.numpy()})
        got = torch.from_numpy(logits)
        if got.shape != expected.shape:
            raise ExportError(f"{onnx_path}: logits of shape {tuple(got.shape)} at "
                              f"{width}x{height}, PyTorch gives {tuple(expected.shape)}")
        differ = labels_from_logits(got) != labels_from_logits(expected)
        check = OnnxCheck(width, height, float((got - expected).abs().max()), float(differ.mean()))
        checks.append(check)
        if check.label_disagreement > max_disagreement:
            raise ExportError(f"{onnx_path} disagrees with PyTorch: {check} (allowed: "
                              f"{100 * max_disagreement:.4f}%)")
    return checks


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("source", type=Path,
                   help="a training run's --output-dir (its best.safetensors) or a weights file")
    p.add_argument("--output", type=Path,
                   help="weights file to write (default: lednet_<dataset>.safetensors beside the "
                        "source)")
    p.add_argument("--onnx", type=Path, help="also write this ONNX file and check it")
    p.add_argument("--check-image", type=Path,
                   help="RGB image for the ONNX check (default: a synthetic image)")
    p.add_argument("--test-data-path", type=Path,
                   help="evaluate on this dataset folder's --test-split and record the result "
                        "as metrics['test'] in the exported weights")
    p.add_argument("--test-split", default="test")
    p.add_argument("--max-label-disagreement", type=float, default=MAX_LABEL_DISAGREEMENT,
                   help="largest fraction of pixels whose ONNX label may differ (default 0.001)")
    return p.parse_args(argv)


def main(argv=None) -> list[OnnxCheck]:
    args = get_args(argv)
    source = source_weights(args.source)
    try:
        model, meta = load_weights(source)
        check_trained(source, meta)
        output = args.output or source.parent / f"lednet_{meta.dataset or 'weights'}.safetensors"
        if output.resolve() == source.resolve():
            raise ExportError(f"{output}: the output would overwrite the source")
        if args.test_data_path is not None:
            meta.metrics["test"] = evaluate_split(model, meta, args.test_data_path,
                                                  args.test_split)
        export_weights(model, meta, output)
        print(f"wrote {output} ({metrics_summary(meta)}, input {meta.input_size[0]}x"
              f"{meta.input_size[1]}) and its ONNX graphs {graphs_beside(output)}")
        if args.onnx is None:
            return []
        export_onnx_file(model, meta, args.onnx)
        rgb = check_image(args.check_image, tuple(meta.input_size))
        checks = compare_onnx(model, meta, args.onnx, rgb, check_sizes(meta),
                              args.max_label_disagreement)
    except (CheckpointError, ExportError) as exc:
        raise SystemExit(f"export failed: {exc}") from None
    print(f"wrote {args.onnx} (dynamic batch, height, width); ONNX Runtime vs PyTorch:")
    for check in checks:
        print(f"  {check}")
    return checks


if __name__ == "__main__":
    main()
