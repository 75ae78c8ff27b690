"""Engines on LEDNet's ONNX export: ONNX Runtime (CPU, TensorRT) and OpenVINO; no torch needed.

The export's graph holds the argmax and the confidence beside the logits; each engine runs the
graph of only the outputs asked for, so labels alone run no softmax and only uint8 images leave
the runtime. The graphs come from a folder of exported graphs (onnx_cache: exported once per
weights file, so a node on these engines never imports torch) or from a LEDNet exported in
memory (core.inference.onnx_export, with torch).
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from pathlib import Path
from typing import Callable

import numpy as np

from lednet_ros.core.inference.network_io import BatchPredictor

DEFAULT_CACHE = Path.home() / ".cache" / "lednet_ros"  # onnx_cache.cache_root's default
TENSORRT_CACHE = DEFAULT_CACHE / "tensorrt"
OUTPUTS = ("logits", "labels", "confidence")
# the output sets the engines run: labels alone, labels with confidence, logits (tests, tools)
GRAPH_OUTPUTS = (("labels",), ("labels", "confidence"), ("logits",))
GraphSource = Callable[[tuple[str, ...]], bytes]


def graph_file_name(outputs: tuple[str, ...]) -> str:
    """File name of the graph of ``outputs`` in a folder of exported graphs."""
    return "+".join(outputs) + ".onnx"


def int8_file_name(outputs: tuple[str, ...]) -> str:
    """File name of the INT8 OpenVINO IR of ``outputs`` (its weights in the .bin beside)."""
    return "+".join(outputs) + ".int8.xml"


def graph_source(source) -> GraphSource:
    """Return graph bytes per set of outputs, from a folder of exported graphs or a LEDNet.

    A LEDNet is exported in memory when a set of outputs is first asked for (imports torch); a
    folder is read as written by core.inference.onnx_export.write_graphs.
    """
    if isinstance(source, (str, Path)):
        folder = Path(source)
        return lambda outputs: (folder / graph_file_name(outputs)).read_bytes()
    from functools import cache

    from lednet_ros.core.inference.onnx_export import graph_bytes

    return cache(lambda outputs: graph_bytes(source, outputs))


def as_array(x) -> np.ndarray:
    """Return the N x 3 x h x w float32 input as a NumPy array (a torch tensor: a host copy)."""
    if isinstance(x, np.ndarray):
        return x if x.dtype == np.float32 else x.astype(np.float32)
    return x.detach().cpu().float().numpy()


class _OnnxEngine(BatchPredictor):
    """The engines that run the ONNX export: one runnable graph per set of outputs.

    Each graph is made when first asked for, so labels alone never pay for the confidence or the
    logits. Input is prepared on the host in float32 (ONNX Runtime copies it to the GPU for
    tensorrt).
    """

    takes_arrays = True  # the Segmenter prepares NumPy input (network_io.network_input)
    input_device = "cpu"

    def __init__(self, source, precision: str):
        self.precision = precision
        self.graph = graph_source(source)

    @property
    def input_dtype(self):
        """torch.float32, for callers that prepare torch input (imports torch)."""
        import torch

        return torch.float32

    def _run(self, outputs: tuple[str, ...], image: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def __call__(self, x) -> np.ndarray:
        """N x C x h x w float32 logits of an N x 3 x h x w input (NumPy or torch)."""
        return self._run(("logits",), as_array(x))[0]

    def predict_batch(self, x, confidence: bool = False):
        """(N x h x w uint8 labels, N x h x w uint8 confidence or None): one run of the graph."""
        outputs = ("labels", "confidence") if confidence else ("labels",)
        results = self._run(outputs, as_array(x))
        return results[0], results[1] if confidence else None


class OnnxRuntimeEngine(_OnnxEngine):
    """ONNX Runtime: CPU (the default provider) or TensorRT (CUDA), input size dynamic."""

    def __init__(self, source, precision: str = "fp32", threads: int = 0,
                 providers=("CPUExecutionProvider",), name: str = "onnxruntime"):
        import onnxruntime as ort

        super().__init__(source, precision)
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
                self.graph(outputs), options, providers=self.providers)
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
    """OpenVINO on the CPU: f32 (exact fp32), bf16 (INFERENCE_PRECISION_HINT) or int8.

    int8 runs the INT8 graphs NNCF made of the weights (core.inference.quantization), read from
    ``source``, which must then be their folder; what they leave unquantized runs in f32.

    Compiled for each input size and set of outputs when first met (the most recent
    MAX_COMPILED kept).

    Thread settings: latency mode, one stream, one inference thread per physical core, and no
    pinning of those threads to cores (pinned threads could not move off the cores the node's
    conversion, DDS and other processes use). OpenVINO has no spin-wait setting: its TBB workers
    spin only briefly before sleeping.
    """

    name = "openvino"
    # what a user changes at run time: the input size (input_width/height) and whether the
    # confidence is wanted (~/confidence or the ground footprints): the last two sizes, each with
    # and without the confidence (each compiled model holds its own buffers: ~25 MB at 480x360)
    MAX_COMPILED = 4

    def __init__(self, source, precision: str = "fp32", threads: int = 0):
        import openvino as ov

        super().__init__(source, precision)
        self.core = ov.Core()
        self.config = {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "INFERENCE_NUM_THREADS": str(threads or inference_threads()),
            "ENABLE_CPU_PINNING": "NO",
            # int8: the layers NNCF left unquantized run in f32
            "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16", "int8": "f32"}[precision],
        }
        if precision == "int8" and not isinstance(source, (str, Path)):
            raise ValueError("precision int8 runs the INT8 graphs of a weights file "
                             "(python -m lednet_ros.tools.quantize), not a model in memory")
        self.folder = Path(source) if isinstance(source, (str, Path)) else None
        self.models = {}  # outputs -> ov.Model (dynamic size)
        self.compiled = OrderedDict()  # (outputs, shape) -> infer request

    def request(self, outputs: tuple[str, ...], shape: tuple[int, ...], streams: int = 0):
        """Return the infer request of the model compiled for ``outputs`` at ``shape``.

        ``streams`` > 0: a list of that many requests of a model compiled for parallel
        streams, one thread each (batches: run_parallel).
        """
        key = (outputs, shape, streams)
        if key in self.compiled:
            self.compiled.move_to_end(key)
            return self.compiled[key]
        if outputs not in self.models:
            self.models[outputs] = self.core.read_model(
                str(self.folder / int8_file_name(outputs)) if self.precision == "int8"
                else self.graph(outputs))
        model = self.models[outputs].clone()
        model.reshape({model.inputs[0]: list(shape)})
        if streams:
            threads = int(self.config["INFERENCE_NUM_THREADS"])
            config = {**self.config, "PERFORMANCE_HINT": "THROUGHPUT",
                      "NUM_STREAMS": str(threads)}
            compiled = self.core.compile_model(model, "CPU", config)
            self.compiled[key] = [compiled.create_infer_request() for _ in range(streams)]
        else:
            self.compiled[key] = self.core.compile_model(model, "CPU", self.config) \
                .create_infer_request()
        if len(self.compiled) > self.MAX_COMPILED:
            self.compiled.popitem(last=False)
        return self.compiled[key]

    def _run(self, outputs, image):
        if image.shape[0] > 1:
            return self._run_parallel(outputs, (image[i:i + 1] for i in range(len(image))),
                                      len(image))
        request = self.request(outputs, image.shape)
        request.infer({0: image})
        # Copies: the request's output buffers are overwritten by its next run.
        return [request.get_output_tensor(i).data.copy() for i in range(len(outputs))]

    def predict_each(self, inputs, count: int, confidence: bool = False):
        """predict_batch of ``count`` 1 x 3 x h x w inputs, made one by one by ``inputs``.

        Each input is made (an iterator: the caller's preprocessing) while the images before
        it run on the other stream.
        """
        outputs = ("labels", "confidence") if confidence else ("labels",)
        results = self._run_parallel(outputs, (as_array(x) for x in inputs), count)
        return results[0], results[1] if confidence else None

    def _run_parallel(self, outputs, images, count: int):
        """Run ``count`` images, one request each, on parallel streams of one thread each.

        As many requests as threads (each holds its own buffers), each taking the next image
        as it finishes one. Measured faster than one batched request (2 cores, 480x360, 4
        images, bf16: 20.4 ms per image against 28.9; docs/engines.md); the labels are the same.
        """
        streams = min(count, int(self.config["INFERENCE_NUM_THREADS"]))
        results, running, idle = [], deque(), None
        for index, image in enumerate(images):  # made while the requests started run
            if idle is None:
                idle = list(self.request(outputs, image.shape, streams=streams))
            if not idle:
                idle.append(self._collect(outputs, *running.popleft(), results))
            request = idle.pop()
            request.start_async({0: image})
            running.append((index, request))
        while running:
            self._collect(outputs, *running.popleft(), results)
        results.sort(key=lambda item: item[0])
        return [np.concatenate([result[i] for _, result in results])
                for i in range(len(outputs))]

    @staticmethod
    def _collect(outputs, index: int, request, results: list):
        """Wait for ``request``, keep copies of its outputs as image ``index``; return it."""
        request.wait()
        results.append((index, [request.get_output_tensor(i).data.copy()
                                for i in range(len(outputs))]))
        return request


def make_onnx_engine(choice, source, device="cpu"):
    """Build the ONNX engine of an EngineChoice (onnxruntime, openvino, tensorrt) on ``source``.

    ``source``: a folder of exported graphs or a LEDNet (graph_source).
    """
    if choice.engine == "onnxruntime":
        engine = OnnxRuntimeEngine(source, choice.precision)
    elif choice.engine == "openvino":
        engine = OpenVinoEngine(source, choice.precision)
    elif choice.engine == "tensorrt":
        engine = OnnxRuntimeEngine(source, choice.precision, name="tensorrt",
                                   providers=tensorrt_providers(device, choice.precision))
    else:
        raise ValueError(f"engine {choice.engine!r} is no ONNX engine")
    engine.reason = choice.reason
    return engine


def tensorrt_providers(device, precision: str) -> list:
    """ONNX Runtime providers for the tensorrt engine (choose_engine has checked they exist)."""
    TENSORRT_CACHE.mkdir(parents=True, exist_ok=True)
    device_id = int(str(device).partition(":")[2] or 0)
    options = {"device_id": device_id, "trt_fp16_enable": precision == "fp16",
               "trt_engine_cache_enable": True, "trt_engine_cache_path": str(TENSORRT_CACHE)}
    return [("TensorrtExecutionProvider", options),
            ("CUDAExecutionProvider", {"device_id": device_id})]
