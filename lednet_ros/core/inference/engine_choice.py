"""The choice of inference engine and precision for a device and CPU (no torch needed).

choose_engine() resolves 'auto' with the rule measured in docs/benchmarks.md and says why;
core.inference.engines builds the engine chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

from lednet_ros.core.inference.cpu import cpu_flags, cpu_model, missing_bf16_reason, native_bf16

ENGINES = ("auto", "torch", "onnxruntime", "openvino", "cuda_graph", "tensorrt")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
ONNX_ENGINES = ("onnxruntime", "openvino")  # the CPU engines that run the ONNX export
# The precisions each engine runs, and on which device type.
ENGINE_PRECISIONS = {
    "torch": {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16")},
    "onnxruntime": {"cpu": ("fp32",)},
    "openvino": {"cpu": ("fp32", "bf16", "int8")},
    "cuda_graph": {"cuda": ("fp32", "fp16")},
    "tensorrt": {"cuda": ("fp32", "fp16")},
}
# CPU flags with which OpenVINO fp32 beats ONNX Runtime fp32 (docs/benchmarks.md): measured on an
# Intel Xeon with AVX-512 and AMX (480x360: 51.5 against 71.3 ms). On a 2-core AMD EPYC with AVX2
# only, the two tied or ONNX Runtime led (with a lower p95), so AVX2-only CPUs keep ONNX Runtime.
OPENVINO_CPU_FLAGS = ("avx512f",)
# CPU flags of int8 dot products (VNNI; AMX's int8 tiles). OpenVINO int8 (NNCF, 100 CamVid train
# frames) against f32, 480x360, 2 threads, on an Intel Xeon with AMX, its ISA capped by
# ONEDNN_MAX_CPU_ISA (docs/engines.md): 1.99x with AMX, 1.5x AVX-512 VNNI, 1.83x AVX-VNNI. Where
# bf16 is native, bf16 was faster still (this Xeon: bf16 18.6 ms, int8 24.0; AMD Zen 4: bf16
# 31.2, int8 41.6), so int8 is chosen by auto only on VNNI CPUs without native bf16.
INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
QUANTIZE_ADVICE = "python -m lednet_ros.tools.quantize WEIGHTS --frames DIR"


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
                  installed: frozenset[str] | None = None,
                  int8_graphs: bool = False) -> EngineChoice:
    """Resolve 'auto' engine and precision for ``device``, or check an explicit pair.

    The rule (measured on each CPU kind in docs/benchmarks.md; the reason names the rule and this
    CPU, never figures from another machine):

    - CUDA: engine cuda_graph; precision fp32 (fp16 is faster but opt-in).
    - CPU engine: openvino where the CPU has AVX-512 (OpenVINO fp32 measured faster there) or
      native bf16 (OpenVINO bf16, the fastest measured); else onnxruntime (faster on AVX2-only);
      each only where installed, else the other, else torch.
    - CPU precision: bf16 where the CPU computes it natively and the engine is OpenVINO (labels
      within the tested agreement of fp32, CamVid mIoU unchanged); else int8 where the CPU has
      VNNI (INT8_CPU_FLAGS), the weights have INT8 graphs and the engine is OpenVINO (engine
      auto takes OpenVINO there); else fp32.

    Args:
        engine: 'auto' or one of ENGINES.
        precision: 'auto' or one of PRECISIONS.
        device: the device the Segmenter runs on ('cpu', 'cuda', 'cuda:N' or a torch.device).
        flags: the CPU's feature flags (default: this machine's /proc/cpuinfo).
        installed: the importable runtimes (default: installed_runtimes()).
        int8_graphs: whether the weights have INT8 graphs (onnx_cache.int8_graphs).

    Raises:
        ValueError: an unknown name, or a pair this device, CPU or installation cannot run,
            naming what is missing.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown inference engine {engine!r} (expected one of {ENGINES})")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (expected one of {PRECISIONS})")
    kind = device_kind(device)
    flags = cpu_flags() if flags is None else flags
    installed = installed_runtimes() if installed is None else installed

    if precision == "fp16" and kind != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA device; the device is {device}")
    if precision == "bf16":
        if kind != "cpu":
            raise ValueError(f"precision 'bf16' runs on the CPU only (engines openvino and "
                             f"torch); the device is {device} (use fp16 there)")
        if not native_bf16(flags):
            raise ValueError(f"precision 'bf16' refused: {missing_bf16_reason(flags)}; without "
                             "them bf16 is emulated and slower than fp32")

    int8_fast = kind == "cpu" and int8_graphs and not native_bf16(flags) and any(
        flag in flags for flag in INT8_CPU_FLAGS)
    if precision == "int8":
        if kind != "cpu":
            raise ValueError(f"precision 'int8' runs on the CPU only (engine openvino); the "
                             f"device is {device}")
        if not int8_graphs:
            raise ValueError("precision 'int8' needs the INT8 graphs of the weights, made once "
                             f"per weights file: {QUANTIZE_ADVICE}")
    if engine == "auto" and (precision == "int8" or (precision == "auto" and int8_fast)) \
            and "openvino" in installed:
        engine, engine_reason = "openvino", (
            "int8 requested: OpenVINO runs it" if precision == "int8" else
            f"auto on {_this_cpu(flags, INT8_CPU_FLAGS)} without native bf16, the weights "
            "having INT8 graphs: the rule takes OpenVINO int8 there")
    elif engine == "auto":
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
        elif int8_fast and "int8" in supported:
            precision = "int8"
            precision_reason = (f"auto on {_this_cpu(flags, INT8_CPU_FLAGS)}: the rule runs the "
                                "weights' INT8 graphs on VNNI CPUs without native bf16 "
                                "(measured: docs/engines.md)")
        elif kind == "cuda":
            precision = "fp32"
            precision_reason = "auto on CUDA keeps fp32 (fp16 is faster but opt-in)"
        else:
            precision = "fp32"
            precision_reason = ("auto: " + (missing_bf16_reason(flags) if not native_bf16(flags)
                                            else f"engine {engine} runs no bf16") + ", so fp32")
            if kind == "cpu" and not int8_graphs and any(f in flags for f in INT8_CPU_FLAGS) \
                    and not native_bf16(flags):
                precision_reason += (f" (int8 would run here, but these weights have no INT8 "
                                     f"graphs: {QUANTIZE_ADVICE})")
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


def _check_engine(engine: str, device, installed: frozenset[str]) -> None:
    if engine in ONNX_ENGINES:
        if device_kind(device) != "cpu":
            raise ValueError(f"engine {engine!r} runs on the CPU here; the device is {device}")
        if engine not in installed:
            raise ValueError(f"engine {engine!r} requested but {engine} is not installed "
                             f"(pip install {engine})")
    elif engine in ("cuda_graph", "tensorrt") and device_kind(device) != "cuda":
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


def device_kind(device) -> str:
    """'cpu' or 'cuda' for a device name ('cpu', 'cuda', 'cuda:1') or a torch.device."""
    return str(device).split(":")[0]
