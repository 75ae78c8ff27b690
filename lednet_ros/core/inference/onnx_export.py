"""LEDNet to ONNX: the graph the ONNX engines run, with the argmax and the confidence in it.

Needs torch (the export traces the model); the engines themselves (onnx_engines) do not.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import torch
from torch import nn

from lednet_ros.core.inference.model import LEDNet
from lednet_ros.core.inference.onnx_engines import GRAPH_OUTPUTS, OUTPUTS, graph_file_name


class _InferenceOutputs(nn.Module):
    """LEDNet with, in the graph, some of its logits, their argmax and their confidence."""

    def __init__(self, model: LEDNet, outputs: tuple[str, ...]):
        super().__init__()
        self.model, self.outputs = model, outputs

    def forward(self, x):
        logits = self.model(x)
        results = {"logits": logits}
        if "labels" in self.outputs:
            results["labels"] = logits.argmax(1).to(torch.uint8)
        if "confidence" in self.outputs:
            # softmax maximum = 1 / sum(exp(logit - max logit)), x 255 rounded to uint8
            top = 1.0 / torch.exp(logits - logits.amax(1, keepdim=True)).sum(1)
            results["confidence"] = torch.round(top * 255.0).to(torch.uint8)
        return tuple(results[name] for name in self.outputs)


def export_onnx(model: LEDNet, target, sample_size=(256, 512),
                outputs: tuple[str, ...] = ("logits",)) -> None:
    """Export to ONNX (opset 17) with dynamic batch, height and width; ``target`` a path or file.

    ``outputs``, from OUTPUTS: ``logits`` (N x C x H x W float), ``labels`` (N x H x W uint8
    argmax, ties to the lower class id) and ``confidence`` (N x H x W uint8 softmax maximum x
    255, rounded).
    """
    import warnings

    if not outputs or not set(outputs) <= set(OUTPUTS):
        raise ValueError(f"ONNX outputs {outputs} (expected some of {OUTPUTS})")
    model = copy.deepcopy(model).eval().float().cpu()
    sample = torch.zeros(1, 3, *sample_size)
    axes = {0: "batch", 2: "height", 3: "width"}
    image_axes = {0: "batch", 1: "height", 2: "width"}
    dynamic = {"logits": axes, "labels": image_axes, "confidence": image_axes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _InferenceOutputs(model, tuple(outputs)).eval(), (sample,), target,
            input_names=["image"], output_names=list(outputs),
            dynamic_axes={"image": axes, **{name: dynamic[name] for name in outputs}},
            opset_version=17, dynamo=False,
        )


def onnx_model(model: LEDNet):
    """Export ``model`` in memory (an onnx.ModelProto) with all of OUTPUTS."""
    import onnx

    buffer = io.BytesIO()
    export_onnx(model, buffer, outputs=OUTPUTS)
    return onnx.load_from_string(buffer.getvalue())


def onnx_bytes(graph, outputs: tuple[str, ...]) -> bytes:
    """Serialise ``graph`` reduced to ``outputs``.

    The nodes no output needs are removed: ONNX Runtime would otherwise run them all.
    """
    from onnx.utils import Extractor

    if tuple(o.name for o in graph.graph.output) == tuple(outputs):
        return graph.SerializeToString()
    return Extractor(graph).extract_model(["image"], list(outputs)).SerializeToString()


def write_graphs(model: LEDNet, folder) -> Path:
    """Write the graph of each of GRAPH_OUTPUTS into ``folder`` (onnx_cache reads them)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    graph = onnx_model(model)
    for outputs in GRAPH_OUTPUTS:
        (folder / graph_file_name(outputs)).write_bytes(onnx_bytes(graph, outputs))
    return folder
