"""INT8: the rule that picks it, the packaged weights' INT8 graphs, and the quantize tool.

Measured on CamVid test (233 frames, 480x360, packaged weights, Intel Xeon with AMX, 2026-12-07):
OpenVINO int8 mIoU 58.63% against 58.70% fp32; labels 99.0% equal to fp32 on average.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from lednet_ros.core.inference.engine_choice import INT8_CPU_FLAGS, choose_engine
from lednet_ros.core.inference.onnx_cache import graphs_beside, int8_graphs
from lednet_ros.core.inference.segmenter import Segmenter, default_weights_path

from drawn_scenes import road_scene

pytest.importorskip("openvino", reason="INT8 runs on OpenVINO, which is not installed")

ICE_LAKE = frozenset({"avx2", "fma", "avx512f", "avx512_vnni"})  # VNNI, no native bf16
ALDER_LAKE = frozenset({"avx2", "fma", "avx_vnni"})
XEON_AMX = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"})
ZEN4 = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"})
EPYC_AVX2 = frozenset({"avx2", "fma"})
BOTH = frozenset({"onnxruntime", "openvino"})


@pytest.mark.parametrize("flags", [ICE_LAKE, ALDER_LAKE], ids=["avx512_vnni", "avx_vnni"])
def test_auto_takes_openvino_int8_on_vnni_cpus_without_native_bf16(flags):
    choice = choose_engine(flags=flags, installed=BOTH, int8_graphs=True)
    assert (choice.engine, choice.precision) == ("openvino", "int8")
    assert "INT8 graphs" in choice.reason and any(f in choice.reason for f in INT8_CPU_FLAGS)


@pytest.mark.parametrize("flags", [XEON_AMX, ZEN4], ids=["amx", "zen4"])
def test_auto_keeps_bf16_where_it_is_native_and_measured_faster(flags):
    choice = choose_engine(flags=flags, installed=BOTH, int8_graphs=True)
    assert (choice.engine, choice.precision) == ("openvino", "bf16")


def test_without_int8_graphs_or_vnni_auto_stays_as_before_and_says_why():
    no_graphs = choose_engine(flags=ICE_LAKE, installed=BOTH, int8_graphs=False)
    assert no_graphs.precision == "fp32" and "tools.quantize" in no_graphs.reason
    avx2 = choose_engine(flags=EPYC_AVX2, installed=BOTH, int8_graphs=True)
    assert (avx2.engine, avx2.precision) == ("onnxruntime", "fp32")
    only_ort = choose_engine(flags=ICE_LAKE, installed=frozenset({"onnxruntime"}),
                             int8_graphs=True)
    assert (only_ort.engine, only_ort.precision) == ("onnxruntime", "fp32")


def test_int8_refusals_name_what_is_missing():
    with pytest.raises(ValueError, match="INT8 graphs of the weights.*tools.quantize"):
        choose_engine("auto", "int8", flags=ICE_LAKE, installed=BOTH, int8_graphs=False)
    with pytest.raises(ValueError, match="'int8' runs on the CPU only.*cuda"):
        choose_engine("auto", "int8", device="cuda", int8_graphs=True)
    with pytest.raises(ValueError, match="engine 'onnxruntime' runs precision fp32"):
        choose_engine("onnxruntime", "int8", flags=ICE_LAKE, installed=BOTH, int8_graphs=True)
    explicit = choose_engine("auto", "int8", flags=EPYC_AVX2, installed=BOTH, int8_graphs=True)
    assert (explicit.engine, explicit.precision) == ("openvino", "int8")


def agreement(segmenter, reference, frames) -> list[float]:
    return [float((segmenter.segment(f) == reference.segment(f)).mean()) for f in frames]


def test_the_packaged_weights_run_int8_close_to_fp32(frames):
    assert int8_graphs(default_weights_path()) == graphs_beside(default_weights_path())
    int8 = Segmenter.from_weights(precision="int8", engine="auto")
    assert (int8.engine.name, int8.precision) == ("openvino", "int8")
    fp32 = Segmenter.from_weights(precision="fp32", engine="openvino")
    shares = agreement(int8, fp32, frames)
    assert min(shares) >= 0.97 and np.mean(shares) >= 0.98, shares
    batch = int8.predict_batch(frames, confidence=True)
    for (labels, confidence), frame in zip(batch, frames):
        assert np.array_equal(labels, int8.segment(frame))
        assert confidence.shape == labels.shape


def test_the_quantize_tool_makes_int8_graphs_the_segmenter_then_runs(tmp_path, frames,
                                                                     monkeypatch):
    pytest.importorskip("nncf", reason="the quantize tool needs nncf, which is not installed")
    weights = tmp_path / "copy.safetensors"
    shutil.copy(default_weights_path(), weights)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate([road_scene(seed=s) for s in range(4)] + frames):
        cv2.imwrite(str(folder / f"{i:02d}.png"), frame[:, :, ::-1])
    monkeypatch.setenv("LEDNET_ROS_CACHE", str(tmp_path / "cache"))
    run = [sys.executable, "-m", "lednet_ros.tools.quantize", str(weights), "--frames"]
    done = subprocess.run([*run, str(folder), "--count", "6"], capture_output=True, text=True,
                          env=dict(os.environ), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "6 of 7 frames" in done.stdout
    missing = subprocess.run([*run, str(tmp_path / "nowhere")], capture_output=True, text=True,
                             env=dict(os.environ), timeout=300)
    assert missing.returncode == 1 and "nowhere" in missing.stderr
    found = int8_graphs(weights)
    assert found is not None and found.parent.parent == tmp_path / "cache"
    int8 = Segmenter.from_weights(weights, precision="int8")
    shares = agreement(int8, Segmenter.from_weights(weights, precision="fp32", engine="openvino"),
                       frames)
    assert min(shares) >= 0.9, shares  # 6 calibration frames only
