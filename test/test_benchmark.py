"""The benchmark script runs and reports every section (correctness only: no timing asserted)."""

from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (the node section needs it)")

from ros_helpers import run_process  # noqa: E402


def test_benchmark_reports_engines_pipeline_and_node(tmp_path):
    """Every kept engine and precision is either measured or listed as skipped with a reason."""
    from lednet_ros.core.inference.engine_choice import (
        ENGINE_PRECISIONS, choose_engine, installed_runtimes,
    )

    out = tmp_path / "bench"
    done = run_process([sys.executable, "-m", "lednet_ros.tools.benchmark", "--sizes", "128x64",
                        "--runs", "2", "--frames", "2", "--node", "--node-frames", "4",
                        "--node-engines", "auto", "torch", "--out", str(out)],
                       cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "benchmark.json").read_text())
    measured = {(row["engine"], row["precision"]) for row in result["engines"]}
    skipped = {(row["engine"], row["precision"]): row["reason"] for row in result["skipped"]}
    expected = {(engine, precision) for engine, kinds in ENGINE_PRECISIONS.items()
                for precision in {p for ps in kinds.values() for p in ps}}
    assert measured | set(skipped) == expected and not measured & set(skipped)
    assert ("torch", "fp32") in measured
    assert {("onnxruntime", "fp32"), ("openvino", "fp32")} & measured == {
        (name, "fp32") for name in installed_runtimes()}
    assert all(reason for reason in skipped.values())
    for row in result["engines"]:
        # fp32 as test_inference; bf16 looser on these 128x64 made frames: measured on an AMD
        # EPYC with avx512_bf16, torch bf16 labels 99.05% equal, confidence up to 22 levels off
        # (test_inference holds bf16 to its measured tolerances at 480x360); int8, calibrated at
        # 480x360 on CamVid: labels 97.1% equal on these frames, confidence up to 92 levels off on
        # the drawn frames of a clone without ../shared (Intel Xeon with AMX; test_int8 holds
        # int8 at 480x360 on CamVid frames)
        share, levels = {"fp32": (0.99999, 2), "int8": (0.95, 128)}.get(row["precision"],
                                                                       (0.98, 40))
        assert row["label_agreement"] >= share, row
        assert row["confidence_max_diff"] <= levels and row["speedup_vs_eager_fp32"] > 0
        assert row["with_confidence_ms"] > 0
    from lednet_ros.core.inference.onnx_cache import int8_graphs
    from lednet_ros.core.inference.segmenter import default_weights_path

    auto = choose_engine("auto", "auto", "cpu",
                         int8_graphs=int8_graphs(default_weights_path()) is not None)
    assert result["auto"] == {"engine": auto.engine, "precision": auto.precision,
                              "reason": auto.reason}
    pipeline, mirrored = result["pipeline"]
    assert [pipeline["mirror_check"], mirrored["mirror_check"]] == [False, True]
    for row in (pipeline, mirrored):
        assert row["size"] == "128x64" and row["fps"] > 0
        assert (row["engine"], row["precision"]) == (auto.engine, auto.precision)
    (ground,) = result["ground"]
    assert ground["size"] == "128x64" and ground["median_ms"] > 0
    assert ground["all_ms"] > 0 and ground["all_p95_ms"] >= ground["all_ms"]
    assert ground["health_ms"] > 0 and ground["health_p95_ms"] >= ground["health_ms"]
    assert "## Ground outputs and health check per frame" in (out / "benchmark.md").read_text()
    assert [(row["engine"], row["profile"]) for row in result["node"]] == [
        (engine, profile) for engine in (auto.engine, "torch")
        for profile in ("fastdds_shm.xml", "default")]
    for row in result["node"]:
        assert row["sent"] == 4 and row["received"] + row["dropped"] == 4
        assert row["received"] >= 1 and row["peak_rss_mb"] >= row["rss_mb"] > 0
        assert 0 < row["first_label_s"] < 300
        assert row["device"] == "cpu"
        if row["engine"] == auto.engine:
            assert row["precision"] == pipeline["precision"]
    report = (out / "benchmark.md").read_text()
    for section in ("Model forward", "Skipped here", "Auto here: engine",
                    "Node pipeline without DDS", "Node end to end over DDS"):
        assert section in report
    assert result["machine"]["cpu_cores"] >= 1


def test_node_benchmark_passes_parameters_and_keeps_an_open_loop_pace(tmp_path):
    """--param reaches the node; --rate publishes at that pace, never faster; --change-every.

    The node's diagnostics report the engine it runs; the pace holds whatever comes back;
    malformed options are refused before any process starts.
    """
    out = tmp_path / "node.json"
    done = run_process([sys.executable, "-m", "lednet_ros.tools.benchmark_node", "--sizes",
                        "96x48", "--frames", "10", "--profiles", "shm", "--param", "engine:=torch",
                        "--rate", "20", "--change-every", "0.2", "--outputs", "overlay",
                        "confidence", "--out", str(out)],
                       cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (row,) = json.loads(out.read_text())
    assert (row["engine"], row["device"], row["size"]) == ("torch", "cpu", "96x48")
    assert (row["mode"], row["sent"]) == ("open loop 20 Hz", 10)
    assert row["received"] >= 1 and row["received"] + row["dropped"] == 10
    assert row["publish_rate_hz"] <= 21.0  # paced: 9 periods of 50 ms from the first to the last
    assert row["parameter_changes"] >= 1 and row["first_label_s"] > 0  # a soak's changes went out
    assert row["outputs"] == "labels overlay confidence"
    for bad, message in ((["--param", "engine=torch"], "'engine=torch' is not of the form"),
                         (["--rate", "-5"], "--rate -5.0 must be 0")):
        refused = run_process([sys.executable, "-m", "lednet_ros.tools.benchmark_node", *bad],
                              cwd=tmp_path, timeout=60)
        assert refused.returncode != 0 and message in refused.stderr, refused.stderr


def test_benchmark_cameras_compares_one_node_with_one_per_camera(tmp_path):
    out = tmp_path / "rows.json"
    done = run_process([sys.executable, "-m", "lednet_ros.tools.benchmark_cameras",
                        "--cameras", "2", "--rate", "5", "--seconds", "3", "--size", "128x64",
                        "--param", "engine:=onnxruntime", "--out", str(out)],
                       cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    one, separate = json.loads(out.read_text())
    assert (one["mode"], one["nodes"], separate["mode"], separate["nodes"]) == (
        "one", 1, "separate", 2)
    for row in (one, separate):
        assert set(row["per_camera"]) == {"cam0", "cam1"}
        assert 0 < row["min_camera_labels_per_s"] <= row["labels_per_s"] / 2 + 1e-9
        assert row["labels_per_s"] <= row["sent_per_s"] + 1.0  # no labels without frames
        assert row["rss_mb"] > 0 and row["peak_rss_mb"] >= row["rss_mb"]


def test_adaptation_benchmark_measures_a_live_adaptation(tmp_path):
    """The node adapts while the probe streams: the outcome, the gaps and the memory come back."""
    import cv2

    from drawn_scenes import made_frames

    folder = tmp_path / "frames"
    folder.mkdir()
    for index, rgb in enumerate(made_frames(6, (160, 120))):
        cv2.imwrite(str(folder / f"{index:02d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out, weights = tmp_path / "result.json", tmp_path / "adapted.safetensors"
    done = run_process([sys.executable, "-m", "lednet_ros.tools.benchmark_adaptation",
                        "--source", str(folder), "--rate", "10", "--frame-size", "160x120",
                        "--input-size", "128x96", "--param", "adapt.method:=bn",
                        "--param", "adapt.frames:=6", "--param", "adapt.check_every:=0",
                        "--param", "engine:=torch", "--output", str(weights), "--out", str(out)],
                       cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["outcome"].startswith("adapted from 6 frames in ")
    assert result["outcome"].endswith("kept: bn, not checked (adapt.check_every 0)")
    assert weights.exists() and result["engine"] == "torch"
    assert 0 < result["gap_before_s"] <= 5.0 and 0 < result["gap_adapting_s"] <= result["seconds"]
    assert result["labels_while_adapting"] >= 6  # the six it gathered went out too
    assert result["peak_rss_mb"] >= result["peak_rss_before_mb"] > 0
    refused = run_process([sys.executable, "-m", "lednet_ros.tools.benchmark_adaptation",
                           "--source", str(folder), "--rate", "0"], cwd=tmp_path, timeout=60)
    assert refused.returncode != 0 and "--rate 0.0: expected a positive rate" in refused.stderr
