"""Inference engines for a trained LEDNet: plain PyTorch, PyTorch with BatchNorm folded, ONNX Runtime.

Each engine maps a 1 x 3 x h x w input tensor to 1 x C x h x w logits (a torch tensor) and gives the
same labels as plain PyTorch within float tolerance (checked in the tests and the benchmark).
"""

from __future__ import annotations

import copy
import io

import torch
from torch import nn

from .model import ConvBNReLU, LEDNet, SSBranch

ENGINES = ("auto", "torch", "torch_fused", "onnxruntime")


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
    """PyTorch inference in a given dtype (fp16 on CUDA), optionally with BatchNorm folded."""

    def __init__(self, model: LEDNet, device: torch.device, dtype: torch.dtype, fused: bool):
        self.name = "torch_fused" if fused else "torch"
        model = fold_batchnorm(model) if fused else model
        self.model = model.eval().to(device, dtype)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class OnnxRuntimeEngine:
    """ONNX Runtime on the CPU (the fastest engine on CPUs), from an in-memory export with
    dynamic height and width so the input size can change at run time."""

    name = "onnxruntime"

    def __init__(self, model: LEDNet, threads: int = 0):
        import onnxruntime as ort

        buffer = io.BytesIO()
        export_onnx(model, buffer)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            buffer.getvalue(), options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {"image": x.cpu().float().numpy()})
        return torch.from_numpy(logits)


def export_onnx(model: LEDNet, target, sample_size=(256, 512)) -> None:
    """Export to ONNX (opset 17) with dynamic batch, height and width; ``target`` a path or file."""
    import warnings

    model = copy.deepcopy(model).eval().float().cpu()
    sample = torch.zeros(1, 3, *sample_size)
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (sample,), target, input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes}, opset_version=17, dynamo=False,
        )


def make_engine(name: str, model: LEDNet, device: torch.device, dtype: torch.dtype):
    """Build the engine ``name``; 'auto' picks ONNX Runtime on CPU where installed (about 3x faster
    than eager PyTorch here), else PyTorch with BatchNorm folded."""
    if name not in ENGINES:
        raise ValueError(f"unknown inference engine {name!r} (expected one of {ENGINES})")
    if name == "auto":
        use_ort = device.type == "cpu" and onnxruntime_available()
        name = "onnxruntime" if use_ort else "torch_fused"
    if name == "onnxruntime":
        if device.type != "cpu":
            raise ValueError(f"engine 'onnxruntime' runs on the CPU here; the device is {device}")
        if not onnxruntime_available():
            raise ValueError("engine 'onnxruntime' requested but onnxruntime is not installed")
        return OnnxRuntimeEngine(model)
    return TorchEngine(model, device, dtype, fused=name == "torch_fused")
