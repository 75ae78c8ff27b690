"""The benchmark script runs and reports every section (correctness only: no timing asserted)."""

from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (the node section needs it)")

from ros_helpers import run_process  # noqa: E402


def test_benchmark_reports_engines_pipeline_and_node(tmp_path):
    out = tmp_path / "bench"
    done = run_process([sys.executable, "-m", "lednet_ros.tools.benchmark", "--sizes", "128x64",
                        "--runs", "2", "--no-compile", "--node", "--node-frames", "4",
                        "--out", str(out)], cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "benchmark.json").read_text())
    engines = {row["engine"] for row in result["engines"]}
    assert {"torch", "torch_fused", "channels_last"} <= engines
    assert all(row["label_agreement"] > 0.99 for row in result["engines"])
    (pipeline,) = result["pipeline"]
    assert pipeline["size"] == "128x64" and pipeline["fps"] > 0
    assert {row["profile"] for row in result["node"]} == {"fastdds_shm.xml", "default"}
    for row in result["node"]:
        assert row["sent"] == 4 and row["received"] + row["dropped"] == 4
        assert row["received"] >= 1 and row["peak_rss_mb"] > 0
        assert row["engine"] == pipeline["engine"]
        assert (row["device"], row["precision"]) == ("cpu", "fp32")
    report = (out / "benchmark.md").read_text()
    for section in ("Model forward", "Node pipeline without DDS", "Node end to end over DDS"):
        assert section in report
    assert result["machine"]["cpu_cores"] >= 1


def test_node_benchmark_passes_parameters_and_keeps_an_open_loop_pace(tmp_path):
    """--param reaches the node (its diagnostics report the engine it runs); --rate publishes at
    that pace, never faster, whatever comes back; malformed options are refused before any process
    starts."""
    out = tmp_path / "node.json"
    done = run_process([sys.executable, "-m", "lednet_ros.tools.benchmark_node", "--sizes", "96x48",
                        "--frames", "10", "--profiles", "shm", "--param", "engine:=torch",
                        "--rate", "20", "--out", str(out)], cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (row,) = json.loads(out.read_text())
    assert (row["engine"], row["device"], row["size"]) == ("torch", "cpu", "96x48")
    assert (row["mode"], row["sent"]) == ("open loop 20 Hz", 10)
    assert row["received"] >= 1 and row["received"] + row["dropped"] == 10
    assert row["publish_rate_hz"] <= 21.0  # paced: 9 periods of 50 ms from the first to the last
    for bad, message in ((["--param", "engine=torch"], "'engine=torch' is not of the form"),
                         (["--rate", "-5"], "--rate -5.0 must be 0")):
        refused = run_process([sys.executable, "-m", "lednet_ros.tools.benchmark_node", *bad],
                              cwd=tmp_path, timeout=60)
        assert refused.returncode != 0 and message in refused.stderr, refused.stderr
