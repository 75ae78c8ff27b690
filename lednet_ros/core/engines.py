"""Inference engines for a trained LEDNet, and the choice of engine and precision for a machine.

Every engine maps a 1 x 3 x h x w input tensor, from one forward pass, to h x w uint8 class ids
and, only when asked, the h x w uint8 confidence (softmax maximum x 255):
``engine.predict(x, confidence=False) -> (labels, confidence or None)``. ``engine(x)`` gives the
1 x C x h x w logits (a torch tensor) for the reference and the tests.

- torch: eager PyTorch, the model as trained: the reference (fp32; fp16 on CUDA; bf16 on CPUs
  with native bf16).
- onnxruntime: ONNX Runtime on the CPU (fp32).
- openvino: OpenVINO on the CPU, f32 (exact fp32) or bf16 (INFERENCE_PRECISION_HINT).
- cuda_graph: BatchNorm folded into the convolutions, channels-last, captured as a CUDA graph per
  input size and replayed: one launch per frame (CUDA; fp32 or fp16).
- tensorrt: ONNX Runtime's TensorRT execution provider (CUDA; needs onnxruntime-gpu built with
  TensorRT; fp16 with precision fp16; engines cached in ~/.cache/lednet_ros/tensorrt).

onnxruntime, openvino and tensorrt run the same in-memory ONNX export, whose graph holds the
argmax and the confidence, so only uint8 images leave the runtime. choose_engine() resolves
'auto' with the rule measured in docs/benchmarks.md and says why.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from lednet_ros.core.cpu import cpu_flags, cpu_model, missing_bf16_reason, native_bf16
from lednet_ros.core.model import ConvBNReLU, LEDNet, SSBranch
from lednet_ros.core.onnx_engines import OnnxRuntimeEngine, OpenVinoEngine, tensorrt_providers
from lednet_ros.core.processing import confidence_from_logits, labels_from_logits

ENGINES = ("auto", "torch", "onnxruntime", "openvino", "cuda_graph", "tensorrt")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# The precisions each engine runs, and on which device type.
ENGINE_PRECISIONS = {
    "torch": {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16")},
    "onnxruntime": {"cpu": ("fp32",)},
    "openvino": {"cpu": ("fp32", "bf16")},
    "cuda_graph": {"cuda": ("fp32", "fp16")},
    "tensorrt": {"cuda": ("fp32", "fp16")},
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# CPU flags with which OpenVINO fp32 beats ONNX Runtime fp32 (docs/benchmarks.md): measured on an
# Intel Xeon with AVX-512 and AMX (480x360: 51.5 against 71.3 ms). On a 2-core AMD EPYC with AVX2
# only, the two tied or ONNX Runtime led (with a lower p95), so AVX2-only CPUs keep ONNX Runtime.
OPENVINO_CPU_FLAGS = ("avx512f",)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def installed_runtimes() -> frozenset[str]:
    """Return the optional CPU runtimes importable here ('onnxruntime', 'openvino')."""
    return frozenset(name for name, available in (("onnxruntime", onnxruntime_available()),
                                                  ("openvino", openvino_available()))
                     if available)


@dataclass(frozen=True)
class EngineChoice:
    """An engine and precision resolved for a device, and why (for logs and diagnostics)."""

    engine: str
    precision: str
    reason: str


def _this_cpu(flags: frozenset[str], wanted) -> str:
    """Name this CPU and which of ``wanted`` it has, for a choice's reason."""
    present = [f for f in wanted if f in flags]
    return f"this CPU ({cpu_model()})" + (f" with {'/'.join(present)}" if present else "")


def choose_engine(engine: str = "auto", precision: str = "auto", device="cpu",
                  flags: frozenset[str] | None = None,
                  installed: frozenset[str] | None = None) -> EngineChoice:
    """Resolve 'auto' engine and precision for ``device``, or check an explicit pair.

    The rule (measured on each CPU kind in docs/benchmarks.md; the reason names the rule and this
    CPU, never figures from another machine):

    - CUDA: engine cuda_graph; precision fp32 (fp16 is faster but opt-in).
    - CPU engine: openvino where the CPU has AVX-512 (OpenVINO fp32 measured faster there) or
      native bf16 (OpenVINO bf16, the fastest measured); else onnxruntime (faster on AVX2-only);
      each only where installed, else the other, else torch.
    - CPU precision: bf16 where the CPU computes it natively and the engine is OpenVINO (labels
      within the tested agreement of fp32, CamVid mIoU unchanged), else fp32.

    Args:
        engine: 'auto' or one of ENGINES.
        precision: 'auto' or one of PRECISIONS.
        device: the torch device (or its name) the Segmenter runs on.
        flags: the CPU's feature flags (default: this machine's /proc/cpuinfo).
        installed: the importable runtimes (default: installed_runtimes()).

    Raises:
        ValueError: an unknown name, or a pair this device, CPU or installation cannot run,
            naming what is missing.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown inference engine {engine!r} (expected one of {ENGINES})")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (expected one of {PRECISIONS})")
    device = torch.device(device)
    flags = cpu_flags() if flags is None else flags
    installed = installed_runtimes() if installed is None else installed
    kind = device.type

    if precision == "fp16" and kind != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA device; the device is {device}")
    if precision == "bf16":
        if kind != "cpu":
            raise ValueError(f"precision 'bf16' runs on the CPU only (engines openvino and "
                             f"torch); the device is {device} (use fp16 there)")
        if not native_bf16(flags):
            raise ValueError(f"precision 'bf16' refused: {missing_bf16_reason(flags)}; without "
                             "them bf16 is emulated and slower than fp32")

    if engine == "auto":
        engine, engine_reason = _auto_engine(kind, precision, flags, installed)
    else:
        engine_reason = "requested"
        _check_engine(engine, device, installed)
    supported = ENGINE_PRECISIONS[engine].get(kind, ())
    if kind not in ENGINE_PRECISIONS[engine]:
        raise ValueError(f"engine {engine!r} needs a {' or '.join(ENGINE_PRECISIONS[engine])} "
                         f"device; the device is {device}")

    if precision == "auto":
        if kind == "cpu" and native_bf16(flags) and "bf16" in supported and engine == "openvino":
            precision = "bf16"
            precision_reason = (f"auto on {_this_cpu(flags, ('avx512_bf16', 'amx_bf16'))}: "
                                "the rule runs OpenVINO in bf16 where the CPU computes bf16 "
                                "natively (measured: docs/benchmarks.md)")
        elif kind == "cuda":
            precision = "fp32"
            precision_reason = "auto on CUDA keeps fp32 (fp16 is faster but opt-in)"
        else:
            precision = "fp32"
            precision_reason = ("auto: " + (missing_bf16_reason(flags) if not native_bf16(flags)
                                            else f"engine {engine} runs no bf16") + ", so fp32")
    elif precision not in supported:
        raise ValueError(f"engine {engine!r} runs precision {' or '.join(supported)} on "
                         f"{kind}, not {precision!r}")
    else:
        precision_reason = "requested" + (" (exact fp32)" if precision == "fp32" else "")
    return EngineChoice(engine, precision,
                        f"engine {engine}: {engine_reason}; precision {precision}: "
                        f"{precision_reason}")


def _auto_engine(kind: str, precision: str, flags: frozenset[str],
                 installed: frozenset[str]) -> tuple[str, str]:
    """(engine, why) for engine 'auto' on a device type (the rule of choose_engine)."""
    if kind == "cuda":
        return "cuda_graph", ("auto on CUDA: one CUDA graph replay per frame, BatchNorm folded "
                              "(faster than eager; docs/benchmarks.md)")
    if precision == "bf16" or (precision == "auto" and native_bf16(flags)):
        why = f"auto on {_this_cpu(flags, ('avx512_bf16', 'amx_bf16'))}"
        if "openvino" in installed:
            return "openvino", why + ": the rule takes OpenVINO where bf16 is native"
        if precision == "bf16":
            return "torch", why + ", openvino not installed: eager PyTorch runs bf16"
    wide = [f for f in OPENVINO_CPU_FLAGS if f in flags]
    if wide and "openvino" in installed:
        return "openvino", (f"auto on {_this_cpu(flags, OPENVINO_CPU_FLAGS)}: the rule takes "
                            "OpenVINO where the CPU has AVX-512")
    if "onnxruntime" in installed:
        if wide:
            return "onnxruntime", (f"auto on {_this_cpu(flags, OPENVINO_CPU_FLAGS)}, "
                                   "openvino not installed")
        return "onnxruntime", (f"auto on {_this_cpu(flags, ())}, without "
                               f"{'/'.join(OPENVINO_CPU_FLAGS)} or native bf16: the rule takes "
                               "ONNX Runtime there")
    if "openvino" in installed:
        return "openvino", "auto on the CPU: onnxruntime not installed"
    return "torch", "auto on the CPU: neither onnxruntime nor openvino installed"


def _check_engine(engine: str, device: torch.device, installed: frozenset[str]) -> None:
    if engine in ("onnxruntime", "openvino"):
        if device.type != "cpu":
            raise ValueError(f"engine {engine!r} runs on the CPU here; the device is {device}")
        if engine not in installed:
            raise ValueError(f"engine {engine!r} requested but {engine} is not installed "
                             f"(pip install {engine})")
    elif engine in ("cuda_graph", "tensorrt") and device.type != "cuda":
        raise ValueError(f"engine {engine!r} needs a CUDA device; the device is {device}")
    elif engine == "tensorrt":
        available = []
        if onnxruntime_available():
            import onnxruntime as ort

            available = ort.get_available_providers()
        if "TensorrtExecutionProvider" not in available:
            raise ValueError("engine 'tensorrt' needs onnxruntime-gpu with the TensorRT "
                             "execution provider; available providers: "
                             f"{', '.join(available) or 'none'}")


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


class TorchEngine:
    """Eager PyTorch in a given precision: the reference."""

    name = "torch"

    def __init__(self, model: LEDNet, device: torch.device, precision: str = "fp32"):
        self.precision = precision
        self.input_device, self.input_dtype = device, DTYPES[precision]  # the Segmenter's input
        # A copy: .eval() and .to() act in place, and the caller's model (other engines, training)
        # must keep its mode, device and dtype.
        self.model = copy.deepcopy(model).eval().to(device, self.input_dtype)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, confidence: bool = False):
        """(h x w uint8 labels, h x w uint8 confidence or None) from one forward pass."""
        logits = self(x)
        return labels_from_logits(logits), confidence_from_logits(logits) if confidence else None


class CudaGraphEngine(TorchEngine):
    """BatchNorm folded, channels-last, replayed from a CUDA graph captured for each input shape.

    The returned logits live in the graph's output buffer: valid until the next call (predict
    reduces them to labels at once).
    """

    name = "cuda_graph"

    def __init__(self, model: LEDNet, device: torch.device, precision: str = "fp32"):
        if device.type != "cuda":
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


def make_engine(name: str, model: LEDNet, device: torch.device, precision: str = "fp32"):
    """Build the engine ``name`` ('auto' resolved by choose_engine) in ``precision``.

    The engine carries ``name``, ``precision`` and ``reason`` (why this engine and precision).
    """
    choice = choose_engine(name, precision, device)
    name, precision = choice.engine, choice.precision
    if name == "onnxruntime":
        engine = OnnxRuntimeEngine(model, precision)
    elif name == "openvino":
        engine = OpenVinoEngine(model, precision)
    elif name == "tensorrt":
        engine = OnnxRuntimeEngine(model, precision,
                                   providers=tensorrt_providers(device, precision),
                                   name="tensorrt")
    elif name == "cuda_graph":
        engine = CudaGraphEngine(model, device, precision)
    else:
        engine = TorchEngine(model, device, precision)
    engine.reason = choice.reason
    return engine
