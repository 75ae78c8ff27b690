"""Inference engines (lednet_ros/core/inference/engines.py) and the choice of engine and precision.

Stated tolerances, against eager PyTorch fp32 on real CamVid test frames (../shared; drawn
road scenes where that is absent), at the weights' input size and at a second size, per frame,
for each engine and precision (TOLERANCES, each with the CPU it was measured on):
- fp32 CPU engines (onnxruntime, openvino f32): labels equal on >= 99.999% of pixels (measured
  over the whole CamVid test split, 40.3M pixels: ONNX Runtime 5 and OpenVINO 7 pixels differ,
  argmax near-ties), confidence (softmax maximum x 255, uint8) within 1 level at every pixel;
- bf16 on the CPU (torch, openvino): labels >= 99.0%, confidence within 8 levels on >= 98.5%;
  measured on an AMD EPYC (Zen 4, avx512_bf16, no AMX), 30 CamVid test frames at 480x360 and 5
  at 320x240: labels worst frame 99.41% (torch) / 99.55% (openvino), within 8 levels worst
  98.95% / 99.19% (within 2 levels only 83% / 87%: bf16 keeps 8 mantissa bits);
- CUDA fp32 (TF32 convolutions) and fp16: labels >= 99.5%, confidence within 2 levels on
  >= 99.5% (measured on an H100 in an earlier session).
Engines or CPU features absent here skip with the reason. Speed is the benchmark's business
(python -m lednet_ros.tools.benchmark), never asserted here.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import onnx
import pytest
import torch

from lednet_ros.core.inference.checkpoint import load_weights, read_metadata
from lednet_ros.core.inference.cpu import BF16_FLAGS, cpu_flags, cpu_model, native_bf16
from lednet_ros.core.inference.engine_choice import (
    ENGINE_PRECISIONS, ENGINES, OPENVINO_CPU_FLAGS, PRECISIONS, choose_engine, installed_runtimes,
)
from lednet_ros.core.inference.engines import TorchEngine, fold_batchnorm, make_engine
from lednet_ros.core.inference.network_io import network_input, preprocess, resize_labels
from lednet_ros.core.inference.onnx_engines import OnnxRuntimeEngine, OpenVinoEngine
from lednet_ros.core.inference.segmenter import Segmenter, default_weights_path

from drawn_scenes import road_scene

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
# (engine, precision) pairs each device type runs on a model in memory; skipped below where
# absent here. int8 runs a weights file's INT8 graphs: test_int8.py.
CPU_VARIANTS = [(e, p) for e, kinds in ENGINE_PRECISIONS.items() for p in kinds.get("cpu", ())
                if p != "int8"]
CUDA_VARIANTS = [(e, p) for e, kinds in ENGINE_PRECISIONS.items() for p in kinds.get("cuda", ())]
XEON_AMX = frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile",
                      "amx_bf16", "amx_int8"})
EPYC_AVX2 = frozenset({"avx2", "fma", "avx", "sse4_2"})
BOTH = frozenset({"onnxruntime", "openvino"})


@pytest.fixture(scope="module")
def model():
    return load_weights(default_weights_path())[0]


@pytest.fixture(scope="module")
def metadata():
    """Return the packaged weights' metadata (read without loading the model again)."""
    return read_metadata(default_weights_path())


@pytest.fixture(scope="module")
def inputs(frames) -> list[torch.Tensor]:
    """Give the frames at the weights' input size (480x360), and the first at 320x240 too.

    The node can change the input size at run time.
    """
    sized = [(frame, (480, 360)) for frame in frames] + [(frames[0], (320, 240))]
    return [preprocess(rgb, size, [0.0] * 3, [1.0] * 3) for rgb, size in sized]


@pytest.fixture(scope="module")
def reference(model, inputs):
    """Eager PyTorch fp32: labels and confidence (softmax maximum x 255, computed here)."""
    results = []
    with torch.inference_mode():
        for x in inputs:
            logits = model.eval()(x)
            top, labels = logits[0].softmax(0).max(0)
            results.append((labels.to(torch.uint8).numpy(),
                            (top * 255).round().to(torch.uint8).numpy()))
    return results


@pytest.fixture(scope="module")
def predictions(model, inputs):
    """Give predict(x, confidence=True) of an engine and precision on every input.

    Made once per module; pytest.skip with the reason where the pair cannot run here.
    """
    cache = {}

    def get(name: str, precision: str, device: torch.device = CPU):
        key = (name, precision, device.type)
        if key not in cache:
            try:
                choose_engine(name, precision, device)  # absent engine or CPU feature: skip
            except ValueError as exc:
                cache[key] = str(exc)
            else:
                engine = make_engine(name, model, device, precision)
                assert (engine.name, engine.precision) == (name, precision)
                cache[key] = (engine, [engine.predict(x.to(engine.input_device,
                                                           engine.input_dtype), True)
                                       for x in inputs])
        if isinstance(cache[key], str):
            pytest.skip(cache[key])
        return cache[key]

    return get


# (engine, precision, device type) -> (label share, confidence levels, share within them); the
# measurements behind each are in the module docstring.
TOLERANCES = {
    ("torch", "fp32", "cpu"): (0.99999, 1, 1.0),
    ("onnxruntime", "fp32", "cpu"): (0.99999, 1, 1.0),
    ("openvino", "fp32", "cpu"): (0.99999, 1, 1.0),
    ("torch", "bf16", "cpu"): (0.990, 8, 0.985),
    ("openvino", "bf16", "cpu"): (0.990, 8, 0.985),
}
CUDA_TOLERANCE = (0.995, 2, 0.995)


def thresholds(name: str, precision: str, device: torch.device) -> tuple[float, int, float]:
    """(label share, confidence levels, share within them) for an engine and precision."""
    if device.type == "cuda":
        return CUDA_TOLERANCE
    return TOLERANCES[(name, precision, device.type)]


def check_engine(results, reference, share, levels, within):
    for (labels, confidence), (expected, expected_confidence) in zip(results, reference):
        assert labels.dtype == np.uint8 and confidence.dtype == np.uint8
        assert labels.shape == confidence.shape == expected.shape
        agreement = float((labels == expected).mean())
        assert agreement >= share, f"labels {100 * agreement:.3f}% equal to eager fp32"
        difference = np.abs(confidence.astype(int) - expected_confidence)
        close = float((difference <= levels).mean())
        assert close >= within, (f"confidence within {levels} levels on {100 * close:.3f}% "
                                 f"(max difference {difference.max()})")


@pytest.mark.parametrize("name,precision", CPU_VARIANTS)
def test_cpu_engines_give_eager_fp32_labels_and_confidence(predictions, reference, name,
                                                           precision):
    _, results = predictions(name, precision)
    check_engine(results, reference, *thresholds(name, precision, CPU))


ENGINE_CLASSES = {"torch": TorchEngine, "onnxruntime": OnnxRuntimeEngine,
                  "openvino": OpenVinoEngine}


@pytest.mark.parametrize("name,precision", CPU_VARIANTS)
def test_building_an_engine_leaves_the_given_model_as_it_was(model, inputs, name, precision):
    """No engine converts, moves or switches the mode of the model it is given.

    Built directly (not through choose_engine), so torch bf16 runs on every CPU, emulated where
    bf16 is not native: a conversion in place shows as changed dtypes on any CPU.
    """
    if name != "torch" and name not in installed_runtimes():
        pytest.skip(f"{name} is not installed")
    given = copy.deepcopy(model).train()
    before = {key: value.clone() for key, value in given.state_dict().items()}
    args = (CPU, precision) if name == "torch" else (precision,)
    ENGINE_CLASSES[name](given, *args)
    assert all(module.training for module in given.modules()), "the model was put in eval mode"
    after = given.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert (after[key].dtype, after[key].device) == (value.dtype, value.device), key
        assert torch.equal(after[key], value), f"{key} changed"
    with torch.inference_mode():
        torch.testing.assert_close(given.eval()(inputs[-1]), model.eval()(inputs[-1]))


@pytest.mark.parametrize("name,precision", [v for v in CPU_VARIANTS if v != ("torch", "fp32")])
def test_confidence_only_when_asked(predictions, inputs, name, precision):
    engine, results = predictions(name, precision)
    x = inputs[0].to(engine.input_device, engine.input_dtype)
    labels, confidence = engine.predict(x)
    assert confidence is None
    np.testing.assert_array_equal(labels, results[0][0])


def test_labels_alone_do_not_compute_the_confidence(predictions):
    """The graph the ONNX engines run for labels alone holds no softmax (no extra cost)."""
    engine, _ = predictions("onnxruntime", "fp32")
    ops = {name: {n.op_type for n in onnx.load_from_string(engine.graph(outputs)).graph.node}
           for name, outputs in (("labels", ("labels",)), ("both", ("labels", "confidence")))}
    assert "ArgMax" in ops["labels"] and not {"Exp", "ReduceSum"} & ops["labels"]
    assert {"ArgMax", "Exp", "ReduceSum"} <= ops["both"]


def test_openvino_fp32_is_exact_fp32_on_every_cpu(predictions):
    """OpenVINO would run bf16 on CPUs with AMX unless told f32: precision fp32 tells it."""
    engine, _ = predictions("openvino", "fp32")
    compiled = engine.request(("labels",), (1, 3, 32, 64)).get_compiled_model()
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32")
    assert compiled.get_property("ENABLE_CPU_PINNING") is False
    assert compiled.get_property("NUM_STREAMS") == 1


def test_bf16_is_refused_naming_the_missing_cpu_features(model, metadata):
    flags = cpu_flags()
    for missing in (EPYC_AVX2, frozenset()):  # a CPU without them: refused on any machine
        with pytest.raises(ValueError, match="precision 'bf16' refused.*avx512_bf16.*amx_bf16"):
            choose_engine("openvino", "bf16", CPU, flags=missing, installed=BOTH)
    if native_bf16(flags):
        pytest.skip(f"this CPU has {'/'.join(f for f in BF16_FLAGS if f in flags)}: bf16 runs "
                    "here (checked by the engine tests)")
    with pytest.raises(ValueError, match="precision 'bf16' refused.*avx512_bf16 nor amx_bf16"):
        Segmenter(model, metadata, device="cpu",
                  precision="bf16")


def test_other_refusals_name_the_value_and_what_is_missing():
    with pytest.raises(ValueError, match="'fp16' needs a CUDA device; the device is cpu"):
        choose_engine("auto", "fp16", CPU)
    with pytest.raises(ValueError, match="engine 'onnxruntime' runs precision fp32 on cpu"):
        choose_engine("onnxruntime", "bf16", CPU, flags=XEON_AMX, installed=BOTH)
    with pytest.raises(ValueError, match="'bf16' runs on the CPU only"):
        choose_engine("torch", "bf16", CUDA, flags=XEON_AMX)
    with pytest.raises(ValueError, match="openvino' requested but openvino is not installed"):
        choose_engine("openvino", "fp32", CPU, installed=frozenset({"onnxruntime"}))
    with pytest.raises(ValueError, match="'cuda_graph' needs a CUDA device; the device is cpu"):
        choose_engine("cuda_graph", "auto", CPU)
    with pytest.raises(ValueError, match="'tensorrt' needs a CUDA device; the device is cpu"):
        choose_engine("tensorrt", "auto", CPU)
    with pytest.raises(ValueError, match="'openvino' runs on the CPU here; the device is cuda"):
        choose_engine("openvino", "auto", CUDA)
    for removed in ("torch_fused", "channels_last", "compile"):
        with pytest.raises(ValueError, match=f"unknown inference engine '{removed}'"):
            choose_engine(removed)
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        choose_engine("auto", "int4")
    assert set(ENGINES) == {"auto", "torch", "onnxruntime", "openvino", "cuda_graph", "tensorrt"}
    assert set(PRECISIONS) == {"auto", "fp32", "fp16", "bf16", "int8"} and PRECISIONS[0] == "auto"


@pytest.mark.parametrize("flags,installed,device,expected", [
    (XEON_AMX, BOTH, CPU, ("openvino", "bf16")),  # measured: OpenVINO bf16 the fastest
    (XEON_AMX - {"avx512_bf16", "amx_bf16"}, BOTH, CPU, ("openvino", "fp32")),  # AVX-512 only
    (EPYC_AVX2, BOTH, CPU, ("onnxruntime", "fp32")),  # measured: ONNX Runtime the faster
    (EPYC_AVX2, frozenset({"openvino"}), CPU, ("openvino", "fp32")),
    (XEON_AMX, frozenset({"onnxruntime"}), CPU, ("onnxruntime", "fp32")),  # no bf16 in ORT
    (XEON_AMX, frozenset(), CPU, ("torch", "fp32")),
    (EPYC_AVX2, BOTH, CUDA, ("cuda_graph", "fp32")),
])
def test_auto_follows_the_measured_rule(flags, installed, device, expected):
    choice = choose_engine("auto", "auto", device, flags=flags, installed=installed)
    assert (choice.engine, choice.precision) == expected
    assert choice.reason.startswith(f"engine {expected[0]}: auto")
    assert f"; precision {expected[1]}: auto" in choice.reason
    explicit = choose_engine("auto", "fp32", device, flags=flags, installed=installed)
    assert explicit.precision == "fp32" and "requested (exact fp32)" in explicit.reason
    # The reason states the rule and the CPU it ran on, never figures measured elsewhere.
    assert not re.search(r"\d\s*(?:%|ms\b|x faster)|H100|Xeon", choice.reason.replace(
        cpu_model(), "")), choice.reason
    if device.type == "cpu" and expected[0] != "torch":
        assert f"this CPU ({cpu_model()})" in choice.reason


def test_auto_picks_what_the_rule_says_for_this_cpu(model, metadata):
    """Check this machine's choice against the rule, restated.

    OpenVINO on CPUs with AVX-512 or native bf16, ONNX Runtime elsewhere (each where installed);
    bf16 only with native bf16 and OpenVINO.
    """
    flags, installed = cpu_flags(), installed_runtimes()
    wide = native_bf16(flags) or any(f in flags for f in OPENVINO_CPU_FLAGS)
    if wide and "openvino" in installed:
        expected = ("openvino", "bf16" if native_bf16(flags) else "fp32")
    elif installed:
        expected = ("onnxruntime" if "onnxruntime" in installed else "openvino", "fp32")
    else:
        expected = ("torch", "fp32")
    segmenter = Segmenter(model, metadata, device="cpu",
                          input_size=(64, 32))
    assert (segmenter.engine.name, segmenter.precision) == expected
    assert segmenter.choice_reason == choose_engine("auto", "auto", CPU).reason
    description = segmenter.describe()
    assert f"engine {expected[0]}, {expected[1]}" in description
    assert segmenter.choice_reason in description


def test_folding_uses_pytorch_and_keeps_the_logits(model, inputs):
    fused = fold_batchnorm(model)
    before = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    after = sum(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert after == 3  # the three downsampling units keep theirs (they normalise pooled channels)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == before > after
    with torch.inference_mode():
        x = inputs[-1]
        assert float((fused(x) - model.eval()(x)).abs().max()) < 1e-3


def test_preprocess_normalises_with_the_weights_mean_and_std():
    rgb = road_scene(6, 10)
    mean, std = [0.3, 0.4, 0.5], [0.2, 0.25, 0.3]
    with torch.inference_mode():  # the node's context; the constants must not be inference-only
        x = preprocess(rgb, (10, 6), mean, std)
    expected = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
                - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-6)
    assert torch.equal(preprocess(rgb, (10, 6), mean, std), x)  # cached constants, same values
    assert not preprocess(rgb, (10, 6), mean, std).is_inference()


def test_segmenter_predicts_labels_and_confidence_at_the_output_size(model, metadata, frames):
    """Confidence comes back only when asked, resized like the labels (nearest neighbour).

    segment() still returns the labels alone.
    """
    segmenter = Segmenter(model, metadata, device="cpu", engine="torch", precision="fp32",
                          input_size=(240, 180))
    rgb = frames[0]
    labels, confidence = segmenter.predict(rgb, confidence=True)
    assert labels.shape == confidence.shape == rgb.shape[:2]
    small_labels, small_confidence = segmenter.predict(rgb, "network", confidence=True)
    assert small_labels.shape == (180, 240)
    size = (rgb.shape[1], rgb.shape[0])
    np.testing.assert_array_equal(labels, resize_labels(small_labels, size))
    np.testing.assert_array_equal(confidence, resize_labels(small_confidence, size))
    assert segmenter.predict(rgb)[1] is None
    np.testing.assert_array_equal(segmenter.segment(rgb), labels)
    # softmax maximum >= 1 / classes; some pixels surer than others
    assert confidence.max() > confidence.min() >= 255 // metadata.num_classes


def test_segmenter_prepares_input_where_its_engine_reads_it(model, metadata):
    """PyTorch engines read a tensor on their own device and dtype; ONNX engines a NumPy array.

    So a CUDA input never goes back to the host for an ONNX engine, and the ONNX engines need
    no torch for their input: network_io.network_input, the same values as preprocess.
    """
    segmenter = Segmenter(model, metadata, device="cpu", engine="torch", input_size=(64, 32))
    x = segmenter._input(road_scene(128, 256), (64, 32))
    assert (x.device, x.dtype, tuple(x.shape)) == (CPU, torch.float32, (1, 3, 32, 64))
    assert segmenter.segment(road_scene(128, 256)).shape == (128, 256)
    for engine in sorted(installed_runtimes()):
        segmenter = Segmenter(model, metadata, device="cpu", engine=engine, input_size=(64, 32))
        array = segmenter._input(road_scene(128, 256), (64, 32))
        assert isinstance(array, np.ndarray) and array.dtype == np.float32
        np.testing.assert_allclose(array, x.numpy(), rtol=0, atol=1e-6)
        assert segmenter.segment(road_scene(128, 256)).shape == (128, 256)


def test_network_input_matches_preprocess_for_any_normalisation():
    rgb = np.random.default_rng(5).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    np.testing.assert_allclose(network_input(rgb, (40, 30), mean, std),
                               preprocess(rgb, (40, 30), mean, std).numpy(), rtol=0, atol=1e-5)


cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason="no CUDA device here (the CUDA engines run on a GPU machine)")


@cuda
@pytest.mark.parametrize("name,precision", CUDA_VARIANTS)
def test_cuda_engines_give_eager_fp32_labels_and_confidence(predictions, reference, inputs,
                                                            name, precision):
    engine, results = predictions(name, precision, CUDA)
    check_engine(results, reference, *thresholds(name, precision, CUDA))
    if name == "cuda_graph":  # one graph per input size, replayed
        assert len(engine.graphs) == 2
        labels, _ = engine.predict(inputs[0].to(CUDA, engine.input_dtype))
        np.testing.assert_array_equal(labels, results[0][0])
        assert len(engine.graphs) == 2


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime", "torch"])
def test_a_batch_gives_the_labels_of_each_frame_alone(engine, frames):
    """Several cameras' frames in one pass: the labels of each frame alone.

    OpenVINO runs a batch as single-image requests on parallel streams: exactly equal. ONNX
    Runtime and torch run batched kernels, whose float sums round differently: labels may
    differ where two classes tie, the confidence by a level.
    """
    try:
        segmenter = Segmenter.from_weights(engine=engine, precision="fp32", device="cpu")
    except ValueError as exc:
        pytest.skip(str(exc))
    sizes = [frames[0], frames[1][:200, :300], frames[2]]  # any image sizes
    batch = segmenter.predict_batch(sizes, confidence=True)
    for rgb, (labels, confidence) in zip(sizes, batch):
        alone, alone_confidence = segmenter.predict(rgb, confidence=True)
        assert labels.shape == rgb.shape[:2]
        if engine == "openvino":
            assert np.array_equal(labels, alone) and np.array_equal(confidence,
                                                                    alone_confidence)
        else:
            assert (labels == alone).mean() >= 0.9999, (labels != alone).sum()
            assert np.abs(confidence.astype(int) - alone_confidence).max() <= 1
