"""INT8 graphs of a weights file: post-training quantization with NNCF, once per weights file.

The ONNX graphs of a weights file (onnx_cache) are quantized by NNCF on calibration frames (the
training data's, e.g. CamVid train) and saved beside them as OpenVINO IR
(``<outputs>.int8.xml`` + ``.bin``) with a record (``int8.json``: the weights' SHA-256, the
export version, what calibrated them). OpenVINO runs them with precision int8 (onnx_engines);
only the quantization itself needs ``nncf`` (python -m lednet_ros.tools.quantize).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lednet_ros.core.inference.network_io import network_input
from lednet_ros.core.inference.onnx_cache import EXPORT_VERSION, INT8_RECORD, int8_ready
from lednet_ros.core.inference.onnx_engines import GRAPH_OUTPUTS, graph_file_name, int8_file_name

DEFAULT_FRAMES = 100  # calibration frames (measured: 100 CamVid train frames, docs/engines.md)


class QuantizationError(RuntimeError):
    """A quantization that cannot run here; the message says what is missing."""


def quantize_graphs(folder, frames, metadata, sha256: str, calibration: str,
                    input_size=None) -> Path:
    """Quantize each graph in ``folder`` on ``frames`` (RGB uint8 arrays); write the IR there.

    Args:
        folder: a folder of exported graphs (onnx_cache.exported_graphs).
        frames: calibration images, preprocessed as the network's input (``metadata``'s
            normalisation) at ``input_size`` (default the weights' training size).
        metadata: the weights' metadata.
        sha256: the weights file's SHA-256 (the record ties the IR to it).
        calibration: what the frames are, for the record (e.g. 'CamVid train, 100 frames').

    Raises:
        QuantizationError: nncf or openvino not installed, or no frames.
    """
    try:
        import nncf
        import openvino as ov
    except ImportError as error:
        raise QuantizationError(f"INT8 quantization needs nncf and openvino ({error}); pip "
                                "install nncf openvino") from error
    folder = Path(folder)
    width, height = input_size or metadata.input_size
    inputs = [network_input(rgb, (width, height), metadata.mean, metadata.std) for rgb in frames]
    if not inputs:
        raise QuantizationError("no calibration frames")
    core = ov.Core()
    for outputs in GRAPH_OUTPUTS:
        model = core.read_model(str(folder / graph_file_name(outputs)))
        model.reshape({model.inputs[0]: [1, 3, height, width]})  # calibration runs one size
        quantized = nncf.quantize(model, nncf.Dataset(inputs), subset_size=len(inputs))
        quantized.reshape({quantized.inputs[0]: [-1, 3, -1, -1]})  # any batch and size again
        ov.save_model(quantized, str(folder / int8_file_name(outputs)))
    record = {"weights_sha256": sha256, "export_version": EXPORT_VERSION,
              "calibration": calibration, "frames": len(inputs),
              "calibration_size": [width, height], "nncf": nncf.__version__,
              "openvino": ov.get_version()}
    (folder / INT8_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    assert int8_ready(folder, sha256)
    return folder


def calibration_frames(images, count: int = DEFAULT_FRAMES) -> list[np.ndarray]:
    """Pick ``count`` frames evenly spread over ``images`` (a sequence of RGB arrays or loaders).

    ``images``: a list, or a dataset with ``len`` and ``load(i) -> (rgb, ...)``.
    """
    total = len(images)
    picks = np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int))
    load = images.load if hasattr(images, "load") else None
    return [load(int(i))[0] if load else images[int(i)] for i in picks]
