"""The ONNX graphs of a weights file, exported once and kept on disk (no torch in this process).

A node on an ONNX engine (onnxruntime, openvino) needs the graphs, not torch: the first use of a
weights file exports them in a child process (``python -m lednet_ros.tools.export_onnx``, which
imports torch and exits), into ``$LEDNET_ROS_CACHE`` (default ``~/.cache/lednet_ros``)
``/onnx/<SHA-256 of the file>-v<EXPORT_VERSION>/``; later uses read them from there. Each weights
file's folder holds a few MB; delete the folder to free it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lednet_ros.core.inference.checkpoint import CheckpointError, file_sha256
from lednet_ros.core.inference.onnx_engines import DEFAULT_CACHE, GRAPH_OUTPUTS, graph_file_name

EXPORT_VERSION = 1  # raise when the exported graphs change, so old folders are not reused


def cache_root() -> Path:
    """``$LEDNET_ROS_CACHE`` or ``~/.cache/lednet_ros``."""
    return Path(os.environ.get("LEDNET_ROS_CACHE") or DEFAULT_CACHE)


def exported_graphs(weights_path) -> Path:
    """Return the folder of the graphs of ``weights_path``, exporting them first if need be.

    ``weights_path`` is a weights file its caller has read the metadata of (Segmenter.from_weights
    does), so a file that is no weights file has been refused by name already.

    Raises:
        CheckpointError: an export that failed (its error).
    """
    weights_path = Path(weights_path)
    folder = cache_root() / "onnx" / f"{file_sha256(weights_path)}-v{EXPORT_VERSION}"
    if all((folder / graph_file_name(o)).is_file() for o in GRAPH_OUTPUTS):
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
