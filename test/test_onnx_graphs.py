"""The ONNX graphs the CPU engines run: shipped beside the packaged weights, else exported once.

lednet_ros/core/inference/{onnx_export,onnx_cache}.py. A ROS machine's apt torch (Debian
bookworm: 1.13) and a machine without the ``onnx`` package must still get graphs: the packaged
weights carry theirs, and the export needs torch alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from lednet_ros.core.inference.checkpoint import file_sha256, load_weights, read_metadata
from lednet_ros.core.inference.network_io import network_input
from lednet_ros.core.inference.onnx_cache import (
    EXPORT_VERSION, GRAPH_RECORD, INT8_RECORD, cache_root, exported_graphs, graphs_beside,
    graphs_match, int8_ready,
)
from lednet_ros.core.inference.onnx_engines import (
    GRAPH_OUTPUTS, OnnxRuntimeEngine, graph_file_name, int8_file_name,
)
from lednet_ros.core.inference.segmenter import default_weights_path

from drawn_scenes import road_scene

PACKAGED = default_weights_path()
TORCH_MAJOR = int(torch.__version__.split(".")[0])


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("LEDNET_ROS_CACHE", str(cache))
    return cache


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) \
        if folder.exists() else []


def test_the_packaged_weights_ship_the_graphs_of_this_file():
    """A changed weights file without new graphs fails here, with the command that makes them."""
    folder = graphs_beside(PACKAGED)
    record = json.loads((folder / GRAPH_RECORD).read_text())
    assert graphs_match(folder, file_sha256(PACKAGED)), (
        f"{folder} was exported from other weights or another EXPORT_VERSION ({record}); run "
        f"python -m lednet_ros.tools.export_onnx {PACKAGED.relative_to(PACKAGED.parents[2])}")
    assert record["export_version"] == EXPORT_VERSION and record["weights"] == PACKAGED.name
    int8 = [INT8_RECORD] + [name for o in GRAPH_OUTPUTS for name in (
        int8_file_name(o), int8_file_name(o).replace(".xml", ".bin"))]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [GRAPH_RECORD] + [graph_file_name(o) for o in GRAPH_OUTPUTS] + int8)
    assert int8_ready(folder, file_sha256(PACKAGED)), (
        f"{folder}: the INT8 graphs are of other weights; run python -m lednet_ros.tools."
        "quantize --camvid ../shared/data/camvid")


def test_the_shipped_graphs_give_what_a_fresh_export_gives():
    """Same labels and confidence as the graphs exported now from the weights (in memory)."""
    model, _ = load_weights(PACKAGED)
    meta = read_metadata(PACKAGED)
    shipped = OnnxRuntimeEngine(graphs_beside(PACKAGED), threads=1)
    fresh = OnnxRuntimeEngine(model, threads=1)
    for seed, (width, height) in ((0, tuple(meta.input_size)), (1, (320, 240))):
        x = network_input(road_scene(seed=seed), (width, height), meta.mean, meta.std)
        labels, confidence = shipped.predict(x, confidence=True)
        expected_labels, expected_confidence = fresh.predict(x, confidence=True)
        assert labels.shape == (height, width)
        assert np.mean(labels == expected_labels) >= 0.99999
        assert np.abs(confidence.astype(int) - expected_confidence).max() <= 1
        np.testing.assert_allclose(shipped(x), fresh(x), atol=1e-3)


def test_the_packaged_weights_need_no_export(fresh_cache):
    assert exported_graphs(PACKAGED) == graphs_beside(PACKAGED)
    assert files_under(fresh_cache) == []


@pytest.fixture
def copied_weights(tmp_path):
    """Copy the packaged weights alone (no graphs beside them)."""
    path = tmp_path / "weights" / "copy.safetensors"
    path.parent.mkdir()
    shutil.copy(PACKAGED, path)
    return path


def test_weights_without_graphs_are_exported_once_into_the_cache(copied_weights, fresh_cache):
    folder = exported_graphs(copied_weights)
    assert folder.parent == cache_root() / "onnx"
    assert folder.name == f"{file_sha256(copied_weights)}-v{EXPORT_VERSION}"
    assert graphs_match(folder, file_sha256(copied_weights))
    written = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert exported_graphs(copied_weights) == folder  # read again, not exported again
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == written
    assert not graphs_beside(copied_weights).exists()


def test_graphs_recorded_for_other_weights_are_not_used(copied_weights, fresh_cache):
    beside = graphs_beside(copied_weights)
    shutil.copytree(graphs_beside(PACKAGED), beside)
    record = json.loads((beside / GRAPH_RECORD).read_text())
    assert exported_graphs(copied_weights) == beside  # same bytes, same SHA-256: used
    record["weights_sha256"] = "0" * 64
    (beside / GRAPH_RECORD).write_text(json.dumps(record))
    assert exported_graphs(copied_weights).parent == fresh_cache / "onnx"
    (beside / GRAPH_RECORD).unlink()
    assert not graphs_match(beside, file_sha256(copied_weights))


BLOCK_ONNX = ("import runpy, sys; sys.modules['onnx'] = None; "  # `import onnx` raises
              "sys.argv = ['export_onnx'] + sys.argv[1:]; "
              "runpy.run_module('lednet_ros.tools.export_onnx', run_name='__main__')")


def export_without_onnx(*args) -> subprocess.CompletedProcess:
    """Run the export tool in a child that cannot import ``onnx`` (rosdep installs none)."""
    return subprocess.run([sys.executable, "-c", BLOCK_ONNX, *map(str, args)],
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.skipif(TORCH_MAJOR >= 2, reason=f"torch {torch.__version__}'s exporter imports "
                    "onnx; runs in the apt lane (Debian bookworm's torch 1.13)")
def test_on_torch_1_the_export_needs_no_onnx_package(copied_weights, tmp_path):
    done = export_without_onnx(copied_weights, "--output-dir", tmp_path / "graphs")
    assert done.returncode == 0, done.stderr[-2000:]
    assert graphs_match(tmp_path / "graphs", file_sha256(copied_weights))


@pytest.mark.skipif(TORCH_MAJOR < 2, reason=f"torch {torch.__version__} exports without onnx")
def test_on_torch_2_the_export_without_onnx_says_what_is_missing(copied_weights, tmp_path):
    done = export_without_onnx(copied_weights, "--output-dir", tmp_path / "graphs")
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"error: {copied_weights}: torch {torch.__version__} exports ONNX through the onnx " \
        "package, which is not installed" in done.stderr and "pip install onnx" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_export_tool_writes_beside_the_weights_by_default(copied_weights):
    done = subprocess.run([sys.executable, "-m", "lednet_ros.tools.export_onnx",
                           str(copied_weights)], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert str(graphs_beside(copied_weights)) in done.stdout
    assert graphs_match(graphs_beside(copied_weights), file_sha256(copied_weights))


def test_the_export_tool_refuses_a_file_that_is_no_weights_file(tmp_path):
    bad = tmp_path / "notes.safetensors"
    bad.write_text("not weights")
    done = subprocess.run([sys.executable, "-m", "lednet_ros.tools.export_onnx", str(bad)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and str(bad) in done.stderr
    assert not graphs_beside(bad).exists()
