"""Inference engines for a trained LEDNet. Each maps a 1 x 3 x h x w input tensor to 1 x C x h x w
logits (a torch tensor) and gives the same labels as plain PyTorch within float tolerance (checked
in the tests and the benchmark):

- torch: the model as trained (eager PyTorch).
- torch_fused: BatchNorm folded into the convolutions before it.
- channels_last: torch_fused in channels-last memory layout (NHWC: faster convolutions on CUDA
  tensor cores and on some CPUs).
- compile: torch_fused through torch.compile (inductor; compiles on the first frame of each input
  size, which takes seconds to a minute).
- cuda_graph: channels_last captured as a CUDA graph per input size and replayed (CUDA only): one
  launch per frame instead of hundreds.
- onnxruntime: ONNX Runtime on the CPU.
- tensorrt: ONNX Runtime's TensorRT execution provider (CUDA; needs onnxruntime-gpu built with
  TensorRT; fp16 with precision fp16; engines cached in ~/.cache/lednet_ros/tensorrt).
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lednet_ros.core.model import ConvBNReLU, LEDNet, SSBranch
from lednet_ros.core.processing import labels_from_logits

ENGINES = ("auto", "torch", "torch_fused", "channels_last", "compile", "cuda_graph", "onnxruntime",
           "tensorrt")
TENSORRT_CACHE = Path.home() / ".cache" / "lednet_ros" / "tensorrt"


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm that follows ``conv`` into the conv's weight and bias."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv.weight.data.mul_(scale.view(-1, 1, 1, 1))
    conv.bias.data.sub_(bn.running_mean).mul_(scale).add_(bn.bias)


@torch.no_grad()
def fold_batchnorm(model: LEDNet) -> LEDNet:
    """A copy of ``model`` for inference with every BatchNorm that directly follows a convolution
    folded into it (the SS-nbt branches and the decoder's conv-BN-ReLU blocks). The downsampling
    units keep theirs: it also normalises the max-pooled channels."""
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if isinstance(module, SSBranch):
            _fold(module.conv1b, module.bn1)
            _fold(module.conv2b, module.bn2)
            module.bn1, module.bn2 = nn.Identity(), nn.Identity()
        elif isinstance(module, ConvBNReLU):
            _fold(module[0], module[1])
            module[1] = nn.Identity()
    return fused


class TorchEngine:
    """PyTorch inference in a given dtype (fp16 on CUDA): as trained, BatchNorm folded,
    channels-last, or compiled (see the module docstring for the names)."""

    def __init__(self, model: LEDNet, device: torch.device, dtype: torch.dtype,
                 name: str = "torch"):
        self.name = name
        self.input_device, self.input_dtype = device, dtype  # where the Segmenter prepares input
        model = model if name == "torch" else fold_batchnorm(model)
        self.memory_format = (torch.channels_last if name in ("channels_last", "cuda_graph")
                              else torch.contiguous_format)
        self.model = model.eval().to(device, dtype).to(memory_format=self.memory_format)
        compiled = name == "compile"
        self.forward = torch.compile(self.model, dynamic=False) if compiled else self.model

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x.contiguous(memory_format=self.memory_format))

    def labels(self, x: torch.Tensor) -> np.ndarray:
        """h x w uint8 class ids (argmax of the logits)."""
        return labels_from_logits(self(x))


class CudaGraphEngine(TorchEngine):
    """channels_last replayed from a CUDA graph captured for each input shape (CUDA only).

    The returned logits live in the graph's output buffer: valid until the next call (the
    Segmenter reduces them to labels at once)."""

    def __init__(self, model: LEDNet, device: torch.device, dtype: torch.dtype):
        if device.type != "cuda":
            raise ValueError(f"engine 'cuda_graph' needs a CUDA device; the device is {device}")
        super().__init__(model, device, dtype, name="cuda_graph")
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
        static_in = torch.empty_like(x).contiguous(memory_format=self.memory_format)
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


class OnnxRuntimeEngine:
    """ONNX Runtime on the CPU (the fastest engine on CPUs), from an in-memory export with
    dynamic height and width so the input size can change at run time. The graph also holds the
    argmax, so labels() gets uint8 class ids without the logits leaving ONNX Runtime. Input is
    prepared on the host in float32 for every provider (ONNX Runtime copies it to the GPU itself
    for tensorrt), so CUDA input never makes a round trip through host memory."""

    input_device, input_dtype = torch.device("cpu"), torch.float32

    def __init__(self, model: LEDNet, threads: int = 0, providers=("CPUExecutionProvider",),
                 name: str = "onnxruntime"):
        import onnxruntime as ort

        self.name = name

        buffer = io.BytesIO()
        export_onnx(model, buffer, with_labels=True)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between runs: the threads would spin on the cores the node's
        # pre/post-processing and DDS need (measured: +40% on the whole frame on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(buffer.getvalue(), options,
                                            providers=list(providers))

    def _run(self, output: str, x: torch.Tensor) -> np.ndarray:
        (result,) = self.session.run([output], {"image": x.cpu().float().numpy()})
        return result

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._run("logits", x))

    def labels(self, x: torch.Tensor) -> np.ndarray:
        return self._run("labels", x)[0]


class _LogitsAndLabels(nn.Module):
    def __init__(self, model: LEDNet):
        super().__init__()
        self.model = model

    def forward(self, x):
        logits = self.model(x)
        return logits, logits.argmax(1).to(torch.uint8)


def export_onnx(model: LEDNet, target, sample_size=(256, 512), with_labels: bool = False) -> None:
    """Export to ONNX (opset 17) with dynamic batch, height and width; ``target`` a path or file.

    Output ``logits`` (N x C x H x W) and, ``with_labels``, ``labels`` (N x H x W uint8 argmax)."""
    import warnings

    model = copy.deepcopy(model).eval().float().cpu()
    sample = torch.zeros(1, 3, *sample_size)
    axes = {0: "batch", 2: "height", 3: "width"}
    outputs = {"logits": axes}
    if with_labels:
        model = _LogitsAndLabels(model)
        outputs["labels"] = {0: "batch", 1: "height", 2: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (sample,), target, input_names=["image"], output_names=list(outputs),
            dynamic_axes={"image": axes, **outputs}, opset_version=17, dynamo=False,
        )


def make_engine(name: str, model: LEDNet, device: torch.device, dtype: torch.dtype):
    """Build the engine ``name``. 'auto' takes the fastest measured here (python -m
    lednet_ros.tools.benchmark): ONNX Runtime on CPU where installed (about 3x eager PyTorch on 2 cores),
    else torch_fused; on CUDA, cuda_graph."""
    if name not in ENGINES:
        raise ValueError(f"unknown inference engine {name!r} (expected one of {ENGINES})")
    if name == "auto":
        if device.type == "cuda":
            name = "cuda_graph"
        else:
            name = "onnxruntime" if onnxruntime_available() else "torch_fused"
    if name == "onnxruntime":
        if device.type != "cpu":
            raise ValueError(f"engine 'onnxruntime' runs on the CPU here; the device is {device}")
        if not onnxruntime_available():
            raise ValueError("engine 'onnxruntime' requested but onnxruntime is not installed")
        return OnnxRuntimeEngine(model)
    if name == "tensorrt":
        return OnnxRuntimeEngine(model, providers=tensorrt_providers(device, dtype),
                                 name="tensorrt")
    if name == "cuda_graph":
        return CudaGraphEngine(model, device, dtype)
    return TorchEngine(model, device, dtype, name)


def tensorrt_providers(device: torch.device, dtype: torch.dtype) -> list:
    """ONNX Runtime providers for the tensorrt engine, or ValueError naming what is missing."""
    if device.type != "cuda":
        raise ValueError(f"engine 'tensorrt' needs a CUDA device; the device is {device}")
    available = []
    if onnxruntime_available():
        import onnxruntime as ort

        available = ort.get_available_providers()
    if "TensorrtExecutionProvider" not in available:
        raise ValueError("engine 'tensorrt' needs onnxruntime-gpu with the TensorRT execution "
                         f"provider; available providers: {', '.join(available) or 'none'}")
    TENSORRT_CACHE.mkdir(parents=True, exist_ok=True)
    device_id = device.index or 0
    options = {"device_id": device_id, "trt_fp16_enable": dtype == torch.float16,
               "trt_engine_cache_enable": True, "trt_engine_cache_path": str(TENSORRT_CACHE)}
    return [("TensorrtExecutionProvider", options),
            ("CUDAExecutionProvider", {"device_id": device_id})]
