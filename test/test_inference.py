"""Inference engines (lednet_ros/core/engines.py): each gives plain PyTorch's labels on the same input.

The stated tolerance: logits within 1e-3 of eager fp32 on the CPU (5e-2 on CUDA, TF32 or fp16),
labels equal on at least 99.9% of the pixels (99% for fp16), on the shipped weights and a made
street frame.
Speed is the benchmark's business (python -m lednet_ros.tools.benchmark), never asserted here.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from lednet_ros.core.checkpoint import load_weights
from lednet_ros.core.engines import ENGINES, fold_batchnorm, make_engine, onnxruntime_available
from lednet_ros.core.processing import preprocess
from lednet_ros.core.segmenter import Segmenter, default_weights_path

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model():
    return load_weights(default_weights_path())[0]


def street(height=128, width=256, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgb = np.zeros((height, width, 3), np.float64)
    rgb[: height // 3] = (235, 238, 242)
    rgb[height // 3: height // 2] = (120, 100, 90)
    rgb[height // 2:] = (85, 83, 90)
    rgb[height // 3: 3 * height // 4, : width // 6] = (60, 90, 40)
    rgb = np.clip(rgb + rng.normal(0, 8, rgb.shape), 0, 255).astype(np.uint8)
    cv2.rectangle(rgb, (width // 2, height // 2), (width // 2 + 40, height // 2 + 20),
                  (40, 40, 120), -1)
    return rgb


def check_agreement(logits, reference, logit_tolerance, label_share):
    assert logits.shape == reference.shape
    difference = float((logits.float() - reference).abs().max())
    agreement = float((logits.float().argmax(1) == reference.argmax(1)).float().mean())
    assert difference <= logit_tolerance, difference
    assert agreement >= label_share, agreement


@pytest.fixture(scope="module")
def frame_and_reference(model):
    x = preprocess(street(), (256, 128), [0.0] * 3, [1.0] * 3)
    with torch.inference_mode():
        reference = model.eval()(x)
    return x, reference


@pytest.mark.parametrize("name", ["torch_fused", "channels_last", "onnxruntime", "compile"])
def test_cpu_engines_give_eager_pytorchs_labels(model, frame_and_reference, name):
    if name == "onnxruntime" and not onnxruntime_available():
        pytest.skip("onnxruntime is not installed")
    x, reference = frame_and_reference
    engine = make_engine(name, model, CPU, torch.float32)
    assert engine.name == name
    check_agreement(engine(x), reference, 1e-3, 0.999)
    if name == "compile":
        return  # a second size recompiles: another 20-40 s on 2 cores, the same code path
    # A second size through the same engine (the node changes input size at runtime).
    x2 = preprocess(street(96, 160, seed=1), (160, 96), [0.0] * 3, [1.0] * 3)
    with torch.inference_mode():
        check_agreement(engine(x2), model(x2), 1e-3, 0.999)


def test_folding_removes_the_batchnorms_after_convolutions(model):
    fused = fold_batchnorm(model)
    before = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    after = sum(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert after < before / 2  # only the downsampling units keep theirs
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == before


def test_auto_and_unknown_engines(model):
    auto = make_engine("auto", model, CPU, torch.float32)
    assert auto.name == ("onnxruntime" if onnxruntime_available() else "torch_fused")
    with pytest.raises(ValueError, match="unknown inference engine 'openvino'"):
        make_engine("openvino", model, CPU, torch.float32)
    with pytest.raises(ValueError, match="'cuda_graph' needs a CUDA device; the device is cpu"):
        make_engine("cuda_graph", model, CPU, torch.float32)
    with pytest.raises(ValueError, match="'tensorrt' needs a CUDA device; the device is cpu"):
        make_engine("tensorrt", model, CPU, torch.float32)
    assert set(ENGINES) == {"auto", "torch", "torch_fused", "channels_last", "compile",
                            "cuda_graph", "onnxruntime", "tensorrt"}


def test_preprocess_normalises_with_the_weights_mean_and_std():
    rgb = street(6, 10)
    mean, std = [0.3, 0.4, 0.5], [0.2, 0.25, 0.3]
    with torch.inference_mode():  # the node's context; the constants must not be inference-only
        x = preprocess(rgb, (10, 6), mean, std)
    expected = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
                - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-6)
    assert torch.equal(preprocess(rgb, (10, 6), mean, std), x)  # cached constants, same values
    assert not preprocess(rgb, (10, 6), mean, std).is_inference()


@pytest.mark.parametrize("name", ["torch_fused", "onnxruntime"])
def test_segmenter_prepares_input_where_its_engine_reads_it(name):
    """ONNX Runtime engines read host float32 (so a CUDA input never goes back to the host);
    PyTorch engines read their own device and dtype."""
    if name == "onnxruntime" and not onnxruntime_available():
        pytest.skip("onnxruntime is not installed")
    segmenter = Segmenter.from_weights(None, engine=name, input_size=(64, 32))
    x = segmenter._input(street())
    assert (x.device, x.dtype) == (segmenter.engine.input_device, segmenter.engine.input_dtype)
    assert tuple(x.shape) == (1, 3, 32, 64)


def test_segmenter_reports_its_engine():
    segmenter = Segmenter.from_weights(None, engine="channels_last", input_size=(256, 128))
    assert "engine channels_last" in segmenter.describe()
    assert segmenter.segment(street()).shape == (128, 256)


cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason="no CUDA device here (the CUDA engines run on a GPU machine)")


@cuda
@pytest.mark.parametrize("name", ["torch_fused", "channels_last", "cuda_graph"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_engines_give_eager_pytorchs_labels(model, frame_and_reference, name, dtype):
    x, reference = frame_and_reference
    device = torch.device("cuda")
    engine = make_engine(name, model, device, dtype)
    # fp32 on CUDA: cuDNN's TF32 convolutions (10-bit mantissa) as PyTorch enables by default.
    tolerance, share = (5e-2, 0.999) if dtype == torch.float32 else (5e-2, 0.99)
    for _ in range(2):  # the second call replays the captured graph
        check_agreement(engine(x.to(device, dtype)).cpu(), reference, tolerance, share)
    if name == "cuda_graph":
        assert len(engine.graphs) == 1
        x2 = preprocess(street(96, 160, seed=1), (160, 96), [0.0] * 3, [1.0] * 3)
        with torch.inference_mode():
            expected = model(x2)
        check_agreement(engine(x2.to(device, dtype)).cpu(), expected, tolerance, share)
        assert len(engine.graphs) == 2


def tensorrt_or_skip():
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no TensorRT execution provider here (needs onnxruntime-gpu "
                    "built with TensorRT)")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_tensorrt_gives_eager_pytorchs_labels(model, frame_and_reference, dtype):
    tensorrt_or_skip()
    x, reference = frame_and_reference
    engine = make_engine("tensorrt", model, torch.device("cuda"), dtype)
    check_agreement(engine(x), reference, 5e-2, 0.99)
