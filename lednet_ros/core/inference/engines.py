"""Inference engines for a trained LEDNet, and the choice of engine and precision for a machine.

Every engine maps a 1 x 3 x h x w input tensor, from one forward pass, to h x w uint8 class ids
and, only when asked, the h x w uint8 confidence (softmax maximum x 255):
``engine.predict(x, confidence=False) -> (labels, confidence or None)``; ``predict_batch``
does the same for N images in one pass (N x h x w each: several cameras' frames).
``engine(x)`` gives the 1 x C x h x w logits (a torch tensor) for the reference and the tests.

- torch: eager PyTorch, the model as trained: the reference (fp32; fp16 on CUDA; bf16 on CPUs
  with native bf16).
- onnxruntime: ONNX Runtime on the CPU (fp32).
- openvino: OpenVINO on the CPU, f32 (exact fp32) or bf16 (INFERENCE_PRECISION_HINT).
- cuda_graph: BatchNorm folded into the convolutions, channels-last, captured as a CUDA graph per
  input size and replayed: one launch per frame (CUDA; fp32 or fp16).
- tensorrt: ONNX Runtime's TensorRT execution provider (CUDA; needs onnxruntime-gpu built with
  TensorRT; fp16 with precision fp16; engines cached in ~/.cache/lednet_ros/tensorrt).

onnxruntime, openvino and tensorrt run the same in-memory ONNX export, whose graph holds the
argmax and the confidence, so only uint8 images leave the runtime. engine_choice resolves 'auto'
 with the rule measured in docs/benchmarks.md and says why.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from lednet_ros.core.inference.engine_choice import (
    ONNX_ENGINES, EngineChoice, choose_engine, device_kind,
)
from lednet_ros.core.inference.model import ConvBNReLU, LEDNet, SSBranch
import numpy as np

from lednet_ros.core.inference.network_io import (
    BatchPredictor, confidence_from_logits, labels_from_logits,
)
from lednet_ros.core.inference.onnx_engines import make_onnx_engine

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@torch.no_grad()
def fold_batchnorm(model: LEDNet) -> LEDNet:
    """Copy ``model`` for inference with the BatchNorms that follow convolutions folded in.

    Folded by torch.nn.utils.fusion.fuse_conv_bn_eval: the SS-nbt branches and the decoder's
    conv-BN-ReLU blocks. The downsampling units keep theirs: it also normalises the max-pooled
    channels.
    """
    fused = copy.deepcopy(model).eval()
    for module in list(fused.modules()):
        if isinstance(module, SSBranch):
            module.conv1b = fuse_conv_bn_eval(module.conv1b, module.bn1)
            module.conv2b = fuse_conv_bn_eval(module.conv2b, module.bn2)
            module.bn1, module.bn2 = nn.Identity(), nn.Identity()
        elif isinstance(module, ConvBNReLU):
            module[0] = fuse_conv_bn_eval(module[0], module[1])
            module[1] = nn.Identity()
    return fused


class TorchEngine(BatchPredictor):
    """Eager PyTorch in a given precision: the reference."""

    name = "torch"

    takes_arrays = False  # the Segmenter prepares a torch tensor (network_io.preprocess)

    def __init__(self, model: LEDNet, device, precision: str = "fp32"):
        device = torch.device(device)
        self.precision = precision
        self.input_device, self.input_dtype = device, DTYPES[precision]  # the Segmenter's input
        # A copy: .eval() and .to() act in place, and the caller's model (other engines, training)
        # must keep its mode, device and dtype.
        self.model = copy.deepcopy(model).eval().to(device, self.input_dtype)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @torch.inference_mode()
    def predict_batch(self, x: torch.Tensor, confidence: bool = False):
        """(N x h x w uint8 labels, N x h x w uint8 confidence or None): one forward pass."""
        logits = self(x)
        images = [logits[i:i + 1] for i in range(logits.shape[0])]
        return (np.stack([labels_from_logits(one) for one in images]),
                np.stack([confidence_from_logits(one) for one in images]) if confidence
                else None)


class CudaGraphEngine(TorchEngine):
    """BatchNorm folded, channels-last, replayed from a CUDA graph captured for each input shape.

    The returned logits live in the graph's output buffer: valid until the next call (predict
    reduces them to labels at once).
    """

    name = "cuda_graph"

    def __init__(self, model: LEDNet, device, precision: str = "fp32"):
        if device_kind(device) != "cuda":
            raise ValueError(f"engine 'cuda_graph' needs a CUDA device; the device is {device}")
        super().__init__(fold_batchnorm(model), device, precision)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.graphs = {}  # shape -> (graph, static input, static output)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = tuple(x.shape)
        if key not in self.graphs:
            self.graphs[key] = self._capture(x)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out

    def _capture(self, x: torch.Tensor):
        static_in = torch.empty_like(x).contiguous(memory_format=torch.channels_last)
        static_in.copy_(x)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up (cuDNN algorithm choice) outside the graph
            for _ in range(3):
                self.model(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.model(static_in)
        return graph, static_in, static_out


def make_engine(name: str, model: LEDNet, device, precision: str = "fp32"):
    """Build the engine ``name`` ('auto' resolved by choose_engine) in ``precision``.

    The engine carries ``name``, ``precision`` and ``reason`` (why this engine and precision).
    """
    return build_engine(choose_engine(name, precision, device), model, device)


def build_engine(choice: EngineChoice, model: LEDNet, device):
    """Build the engine of a resolved EngineChoice on ``model``."""
    if choice.engine in ONNX_ENGINES + ("tensorrt",):
        return make_onnx_engine(choice, model, device)
    engine_class = CudaGraphEngine if choice.engine == "cuda_graph" else TorchEngine
    engine = engine_class(model, device, choice.precision)
    engine.reason = choice.reason
    return engine
