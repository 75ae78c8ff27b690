"""LEDNet to ONNX: the graphs the ONNX engines run, with the argmax and the confidence in them.

Needs torch (the export traces the model); torch's exporter itself imports the ``onnx`` package
from torch 2 on (torch 1.13, Debian bookworm's python3-torch, does without). Each set of outputs
is exported as its own graph, so no graph is cut down afterwards. The engines themselves
(onnx_engines) need neither.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import io
import json
from pathlib import Path

import torch
from torch import nn

from lednet_ros.core.inference.checkpoint import file_sha256
from lednet_ros.core.inference.model import LEDNet
from lednet_ros.core.inference.onnx_cache import EXPORT_VERSION, GRAPH_RECORD, graphs_beside
from lednet_ros.core.inference.onnx_engines import GRAPH_OUTPUTS, OUTPUTS, graph_file_name

OPSET = 17


class OnnxExportError(RuntimeError):
    """An export that cannot run here; the message says what is missing."""


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
    # The TorchScript exporter: the default up to torch 2.8, chosen by dynamo=False after it
    # (torch < 2.5 has no such argument).
    exporter = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters \
        else {}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                _InferenceOutputs(model, tuple(outputs)).eval(), (sample,), target,
                input_names=["image"], output_names=list(outputs),
                dynamic_axes={"image": axes, **{name: dynamic[name] for name in outputs}},
                opset_version=OPSET, **exporter,
            )
        except Exception as error:
            if importlib.util.find_spec("onnx") is None:
                raise OnnxExportError(
                    f"torch {torch.__version__} exports ONNX through the onnx package, which "
                    f"is not installed ({type(error).__name__}: {error}); pip install onnx "
                    "(on a ROS machine with the NumPy constraint of the README)") from error
            raise


def graph_bytes(model: LEDNet, outputs: tuple[str, ...]) -> bytes:
    """Export the graph of ``outputs`` in memory (onnx_engines.graph_source runs it)."""
    buffer = io.BytesIO()
    export_onnx(model, buffer, outputs=outputs)
    return buffer.getvalue()


def write_graphs(model: LEDNet, folder, weights_path=None) -> Path:
    """Write the graph of each of GRAPH_OUTPUTS into ``folder`` (onnx_cache reads them).

    With ``weights_path`` (the file ``model`` was loaded from) the folder also gets the record
    that lets onnx_cache use it beside that file: its SHA-256 and EXPORT_VERSION.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for outputs in GRAPH_OUTPUTS:
        (folder / graph_file_name(outputs)).write_bytes(graph_bytes(model, outputs))
    if weights_path is not None:
        record = {"weights": Path(weights_path).name, "weights_sha256": file_sha256(weights_path),
                  "export_version": EXPORT_VERSION, "opset": OPSET, "torch": torch.__version__}
        (folder / GRAPH_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return folder


def write_graphs_beside(model: LEDNet, weights_path) -> Path:
    """Write the graphs of ``model``, saved as ``weights_path``, into the folder beside that file.

    A node then runs them without exporting (onnx_cache.exported_graphs). Graphs left there by
    earlier weights of the same name are replaced.
    """
    import shutil

    folder = graphs_beside(weights_path)
    shutil.rmtree(folder, ignore_errors=True)
    return write_graphs(model, folder, weights_path)
