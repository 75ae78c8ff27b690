"""Engines on the in-memory ONNX export: ONNX Runtime (CPU, TensorRT) and OpenVINO.

The export's graph holds the argmax and the confidence beside the logits; each engine keeps only
the outputs asked for, so labels alone run no softmax and only uint8 images leave the runtime.
"""

from __future__ import annotations

import copy
import io
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lednet_ros.core.model import LEDNet

TENSORRT_CACHE = Path.home() / ".cache" / "lednet_ros" / "tensorrt"
OUTPUTS = ("logits", "labels", "confidence")


class _OnnxEngine:
    """The engines that run the ONNX export: one runnable graph per set of outputs.

    Each graph is made when first asked for, so labels alone never pay for the confidence or the
    logits. Input is prepared on the host in float32 (ONNX Runtime copies it to the GPU for
    tensorrt).
    """

    input_device, input_dtype = torch.device("cpu"), torch.float32

    def __init__(self, model: LEDNet, precision: str):
        self.precision = precision
        self.onnx = onnx_model(model)

    def _run(self, outputs: tuple[str, ...], image: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (logits,) = self._run(("logits",), x.cpu().float().numpy())
        return torch.from_numpy(logits)

    def predict(self, x: torch.Tensor, confidence: bool = False):
        """(h x w uint8 labels, h x w uint8 confidence or None) from one run of the graph."""
        outputs = ("labels", "confidence") if confidence else ("labels",)
        results = self._run(outputs, x.cpu().float().numpy())
        return results[0][0], results[1][0] if confidence else None


class OnnxRuntimeEngine(_OnnxEngine):
    """ONNX Runtime: CPU (the default provider) or TensorRT (CUDA), input size dynamic."""

    def __init__(self, model: LEDNet, precision: str = "fp32", threads: int = 0,
                 providers=("CPUExecutionProvider",), name: str = "onnxruntime"):
        import onnxruntime as ort

        super().__init__(model, precision)
        self.name = name
        self.ort, self.threads, self.providers = ort, threads, list(providers)
        self.sessions = {}
        self._session(("labels",))  # made now, so the first frame is not slowed by it

    def _session(self, outputs: tuple[str, ...]):
        if outputs not in self.sessions:
            options = self.ort.SessionOptions()
            options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # No busy-waiting between runs: the threads would spin on the cores the node's
            # pre/post-processing and DDS need (measured: +40% on the whole frame on 2 cores).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if self.threads:
                options.intra_op_num_threads = self.threads
            self.sessions[outputs] = self.ort.InferenceSession(
                onnx_bytes(self.onnx, outputs), options, providers=self.providers)
        return self.sessions[outputs]

    def _run(self, outputs, image):
        return self._session(outputs).run(list(outputs), {"image": image})


def inference_threads() -> int:
    """Count the physical cores this process may run on (one inference thread each)."""
    cores = set()
    for cpu in sorted(os.sched_getaffinity(0)):
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


class OpenVinoEngine(_OnnxEngine):
    """OpenVINO on the CPU: f32 (exact fp32) or bf16 (INFERENCE_PRECISION_HINT).

    Compiled for each input size and set of outputs when first met (the most recent
    MAX_COMPILED kept).

    Thread settings: latency mode, one stream, one inference thread per physical core, and no
    pinning of those threads to cores (pinned threads could not move off the cores the node's
    conversion, DDS and other processes use). OpenVINO has no spin-wait setting: its TBB workers
    spin only briefly before sleeping.
    """

    name = "openvino"
    MAX_COMPILED = 8

    def __init__(self, model: LEDNet, precision: str = "fp32", threads: int = 0):
        import openvino as ov

        super().__init__(model, precision)
        self.core = ov.Core()
        self.config = {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "INFERENCE_NUM_THREADS": str(threads or inference_threads()),
            "ENABLE_CPU_PINNING": "NO",
            "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision],
        }
        self.models = {}  # outputs -> ov.Model (dynamic size)
        self.compiled = OrderedDict()  # (outputs, shape) -> infer request

    def request(self, outputs: tuple[str, ...], shape: tuple[int, ...]):
        """Return the infer request of the model compiled for ``outputs`` at ``shape``."""
        key = (outputs, shape)
        if key in self.compiled:
            self.compiled.move_to_end(key)
            return self.compiled[key]
        if outputs not in self.models:
            self.models[outputs] = self.core.read_model(onnx_bytes(self.onnx, outputs))
        model = self.models[outputs].clone()
        model.reshape({model.inputs[0]: list(shape)})
        self.compiled[key] = self.core.compile_model(model, "CPU", self.config) \
            .create_infer_request()
        if len(self.compiled) > self.MAX_COMPILED:
            self.compiled.popitem(last=False)
        return self.compiled[key]

    def _run(self, outputs, image):
        request = self.request(outputs, image.shape)
        request.infer({0: image})
        # Copies: the request's output buffers are overwritten by its next run.
        return [request.get_output_tensor(i).data.copy() for i in range(len(outputs))]


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


def tensorrt_providers(device: torch.device, precision: str) -> list:
    """ONNX Runtime providers for the tensorrt engine (choose_engine has checked they exist)."""
    TENSORRT_CACHE.mkdir(parents=True, exist_ok=True)
    device_id = device.index or 0
    options = {"device_id": device_id, "trt_fp16_enable": precision == "fp16",
               "trt_engine_cache_enable": True, "trt_engine_cache_path": str(TENSORRT_CACHE)}
    return [("TensorrtExecutionProvider", options),
            ("CUDAExecutionProvider", {"device_id": device_id})]
