"""The ONNX graphs of a weights file: shipped beside it, or exported once and kept on disk.

A node on an ONNX engine (onnxruntime, openvino) needs the graphs, not torch. They are looked for
in this order:

1. beside the weights file, in ``<stem>.graphs/`` (``lednet_camvid.safetensors`` ->
   ``lednet_camvid.graphs/``), as the packaged weights ship them and ``export``, ``adapt`` and
   ``python -m lednet_ros.tools.export_onnx`` write them: used when its record
   (``graphs.json``) names the file's SHA-256 and this EXPORT_VERSION;
2. in ``$LEDNET_ROS_CACHE`` (default ``~/.cache/lednet_ros``)
   ``/onnx/<SHA-256 of the file>-v<EXPORT_VERSION>/``, exported there by the first use of the
   weights in a child process (``python -m lednet_ros.tools.export_onnx``, which imports torch
   and exits). Each weights file's folder holds a few MB; delete it to free them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lednet_ros.core.inference.checkpoint import CheckpointError, file_sha256
from lednet_ros.core.inference.onnx_engines import (
    DEFAULT_CACHE, GRAPH_OUTPUTS, graph_file_name, int8_file_name,
)

EXPORT_VERSION = 1  # raise when the exported graphs change, so old folders are not reused
GRAPH_RECORD = "graphs.json"  # in a folder of graphs: the weights they were exported from
INT8_RECORD = "int8.json"  # and of its INT8 graphs (core.inference.quantization writes them)


def cache_root() -> Path:
    """``$LEDNET_ROS_CACHE`` or ``~/.cache/lednet_ros``."""
    return Path(os.environ.get("LEDNET_ROS_CACHE") or DEFAULT_CACHE)


def graphs_beside(weights_path) -> Path:
    """Return the folder of graphs that goes with ``weights_path``: ``<stem>.graphs`` beside."""
    weights_path = Path(weights_path)
    return weights_path.with_name(weights_path.stem + ".graphs")


def _complete(folder: Path) -> bool:
    return all((folder / graph_file_name(o)).is_file() for o in GRAPH_OUTPUTS)


def _recorded_for(record_path: Path, sha256: str) -> bool:
    """Whether the JSON record at ``record_path`` names weights ``sha256`` and EXPORT_VERSION."""
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(record, dict) and record.get("weights_sha256") == sha256
            and record.get("export_version") == EXPORT_VERSION)


def graphs_match(folder, sha256: str) -> bool:
    """Whether ``folder`` holds all graphs, recorded as exported from weights of ``sha256``."""
    folder = Path(folder)
    return _recorded_for(folder / GRAPH_RECORD, sha256) and _complete(folder)


def int8_ready(folder, sha256: str) -> bool:
    """Whether ``folder`` holds INT8 graphs of every output set, recorded for ``sha256``."""
    folder = Path(folder)
    files = [folder / int8_file_name(o) for o in GRAPH_OUTPUTS]
    return _recorded_for(folder / INT8_RECORD, sha256) and all(
        f.is_file() and f.with_suffix(".bin").is_file() for f in files)


def int8_graphs(weights_path) -> Path | None:
    """Return the folder of the INT8 graphs of ``weights_path`` (beside it, cached) or None.

    Nothing is exported or quantized here (python -m lednet_ros.tools.quantize does that).
    """
    sha256 = file_sha256(weights_path)
    for folder in (graphs_beside(weights_path), cache_folder(sha256)):
        if _complete(folder) and int8_ready(folder, sha256):
            return folder
    return None


def cache_folder(sha256: str) -> Path:
    """Where the graphs of the weights of ``sha256`` are cached when none ship beside them."""
    return cache_root() / "onnx" / f"{sha256}-v{EXPORT_VERSION}"


def exported_graphs(weights_path) -> Path:
    """Return the folder of the graphs of ``weights_path``, exporting them first if need be.

    ``weights_path`` is a weights file its caller has read the metadata of (Segmenter.from_weights
    does), so a file that is no weights file has been refused by name already.

    Raises:
        CheckpointError: an export that failed (its error).
    """
    weights_path = Path(weights_path)
    sha256 = file_sha256(weights_path)
    if graphs_match(graphs_beside(weights_path), sha256):
        return graphs_beside(weights_path)
    folder = cache_folder(sha256)
    if _complete(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder (an export cut short)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".export-"))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lednet_ros.tools.export_onnx", str(weights_path),
             "--output-dir", str(staging)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise CheckpointError(f"{weights_path}: ONNX export failed (exit {done.returncode}): "
                                  f"{done.stderr.strip()[-800:]}")
        try:
            os.replace(staging, folder)  # atomic: a half-written folder is never seen
        except OSError:  # another process finished the same export first
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def rewrite_metadata(weights_path, metadata) -> str:
    """Write ``metadata`` into a weights file, its tensors unchanged; return its new SHA-256.

    The graphs beside it (and their INT8 graphs) depend on the tensors alone, so their records
    are given the new SHA-256, once the tensors read back equal to those before. Imports torch.

    Raises:
        CheckpointError: the tensors read back differ (the records are then left as they were).
    """
    import torch
    from safetensors.torch import load_file

    from lednet_ros.core.inference.checkpoint import load_weights, save_weights

    before_sha, before = file_sha256(weights_path), load_file(str(weights_path))
    model, _ = load_weights(weights_path)
    save_weights(weights_path, model, metadata)
    after = load_file(str(weights_path))
    if before.keys() != after.keys() or not all(
            before[k].dtype == after[k].dtype and torch.equal(before[k], after[k])
            for k in before):
        raise CheckpointError(f"{weights_path}: tensors changed while rewriting the metadata")
    sha = file_sha256(weights_path)
    folder = graphs_beside(weights_path)
    for name in (GRAPH_RECORD, INT8_RECORD):
        if _recorded_for(folder / name, before_sha):
            record = json.loads((folder / name).read_text())
            record["weights_sha256"] = sha
            (folder / name).write_text(json.dumps(record, indent=2) + "\n")
    return sha
