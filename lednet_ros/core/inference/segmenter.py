"""A Segmenter: LEDNet weights + device + engine + precision.

One call from an RGB array to class ids (and, when asked, their confidence).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lednet_ros.core.data.classes import palette
from lednet_ros.core.inference.checkpoint import WeightsMetadata, load_weights, read_metadata
from lednet_ros.core.inference.engine_choice import ONNX_ENGINES, choose_engine
from lednet_ros.core.inference.network_io import network_input, preprocess, resize_labels
from lednet_ros.core.inference.onnx_cache import exported_graphs, int8_graphs
from lednet_ros.core.inference.onnx_engines import make_onnx_engine

if TYPE_CHECKING:
    from lednet_ros.core.inference.model import LEDNet

OUTPUT_RESOLUTIONS = ("original", "network")  # labels at the image's size or the network's
MAX_INPUT_SIDE = 8192


def default_weights_path() -> Path:
    """Return the weights shipped with the package (trained on CamVid by training/train.py)."""
    return Path(__file__).resolve().parents[2] / "weights" / "lednet_camvid.safetensors"


def resolve_device(request: str) -> str:
    """Map 'auto' to 'cuda' where a CUDA device is usable, else 'cpu'; check 'cuda' / 'cuda:N'.

    Returns the device's name ('cpu', 'cuda', 'cuda:N'). torch is imported only where the CUDA
    driver reports a device (so a CPU machine runs the ONNX engines without torch).
    """
    if request == "cpu":
        return "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", request)
    if request != "auto" and not match:
        raise ValueError(f"unknown device {request!r} (expected auto, cpu, cuda or cuda:N)")
    count = cuda_device_count()
    if request == "auto":
        return "cuda" if count else "cpu"
    if not count:
        raise ValueError(
            f"device {request!r} requested but CUDA is not available on this machine")
    index = int(match.group(1) or 0)
    if index >= count:
        raise ValueError(f"device {request!r} requested but only {count} CUDA device(s) exist")
    return request


def cuda_device_count() -> int:
    """CUDA devices torch can use; 0 without asking torch where no CUDA driver answers."""
    import ctypes

    try:
        driver = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
    except OSError:
        return 0
    if count.value == 0:
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_output_resolution(output: str) -> str:
    """``output`` when it is one of OUTPUT_RESOLUTIONS; else ValueError naming it."""
    if output not in OUTPUT_RESOLUTIONS:
        raise ValueError(f"output_resolution is {output!r}; expected one of "
                         f"{', '.join(OUTPUT_RESOLUTIONS)}")
    return output


def check_input_size(size) -> tuple[int, int]:
    """(width, height) of positive integers up to MAX_INPUT_SIDE."""
    width, height = (int(v) for v in size)
    if not (1 <= width <= MAX_INPUT_SIDE and 1 <= height <= MAX_INPUT_SIDE):
        raise ValueError(
            f"input size {width}x{height} is outside 1..{MAX_INPUT_SIDE} pixels per side"
        )
    return width, height


class Segmenter:
    """Runs LEDNet in inference mode on one device, engine and precision.

    Args:
        model: a LEDNet with loaded weights.
        metadata: the weights' metadata (classes, colours, normalisation, input size).
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
        precision: 'auto' (the fastest measured whose labels agree with fp32: bf16 on CPUs with
            native bf16, int8 on VNNI CPUs for weights with INT8 graphs, fp32 elsewhere),
            'fp32' (exact), 'fp16' (CUDA only), 'bf16' (CPUs with avx512_bf16 or amx_bf16
            only) or 'int8' (the weights' INT8 graphs, core.inference.quantization).
        input_size: network input (width, height); default: the weights' training size.
        engine: 'auto' (the fastest measured for this device and CPU) or one of engines.ENGINES.

    Attributes:
        engine: the engine built; ``engine.name`` and ``precision`` say what runs.
        precision: the precision resolved from the request.
        choice_reason: why this engine and precision ('engine onnxruntime: auto on ...;
            precision fp32: ...'), for start-up logs and diagnostics.

    Raises:
        ValueError: an unknown or unavailable device, engine or precision, naming what is missing
            (precision bf16 on a CPU without native bf16 names the missing CPU features).
    """

    def __init__(
        self,
        model: LEDNet | None,
        metadata: WeightsMetadata,
        *,
        device: str = "auto",
        precision: str = "auto",
        input_size=None,
        engine: str = "auto",
        weights_path=None,
    ):
        self.device = resolve_device(device)
        self.metadata = metadata
        self.palette = palette(metadata.class_colors)
        self.input_size = check_input_size(input_size or metadata.input_size)
        self.engine = self._make_engine(engine, model, precision, weights_path)
        self.precision = self.engine.precision
        self.choice_reason = self.engine.reason

    def _make_engine(self, engine: str, model, precision: str, weights_path):
        int8 = int8_graphs(weights_path) if weights_path is not None else None
        choice = choose_engine(engine, precision, self.device, int8_graphs=int8 is not None)
        if choice.precision == "int8":
            return make_onnx_engine(choice, int8)
        if model is None and choice.engine in ONNX_ENGINES:  # no torch: the exported graphs
            return make_onnx_engine(choice, exported_graphs(weights_path))
        from lednet_ros.core.inference.engines import build_engine  # imports torch

        model = model if model is not None else load_weights(weights_path)[0]
        return build_engine(choice, model, self.device)

    @classmethod
    def from_weights(cls, path=None, **kwargs) -> "Segmenter":
        """Wrap a weights file (default: the packaged weights).

        On the CPU with an ONNX engine (onnxruntime, openvino) the model is not built: the engine
        runs the file's exported graphs (core.inference.onnx_cache) and torch is never imported.
        """
        path = path or default_weights_path()
        return cls(None, read_metadata(path), weights_path=path, **kwargs)

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata.class_names)

    @property
    def num_classes(self) -> int:
        return self.metadata.num_classes

    def describe(self, input_size=None) -> str:
        """Describe in one line: model, device, engine, precision, input size, and why.

        ``input_size``: the size the caller runs at (default: the Segmenter's own).
        """
        w, h = input_size or self.input_size
        return (f"LEDNet ({self.metadata.decoder}) on {self.device}, engine {self.engine.name}, "
                f"{self.precision}, input {w}x{h} ({self.choice_reason})")

    def _input(self, rgb: np.ndarray, size: tuple[int, int]):
        if self.engine.takes_arrays:
            return network_input(rgb, size, self.metadata.mean, self.metadata.std)
        return preprocess(rgb, size, self.metadata.mean, self.metadata.std,
                          self.engine.input_device, self.engine.input_dtype)

    def predict(self, rgb: np.ndarray, output: str = "original", *, confidence: bool = False,
                input_size=None):
        """(labels, confidence) for an H x W x 3 uint8 RGB array, from one forward pass.

        Args:
            rgb: the image.
            output: 'original' (the image's own size) or 'network' (the network's input size).
            confidence: also compute the confidence (softmax maximum x 255); costs nothing when
                False.
            input_size: the network input (width, height) for this frame (default: the
                Segmenter's ``input_size``).

        Returns:
            labels: uint8 class ids; confidence: uint8 or None (when not asked). Both resized
            to the output size by nearest neighbour, so each pixel's confidence is that of its
            own label.
        """
        return self.predict_batch([rgb], output, confidence=confidence, input_size=input_size)[0]

    def predict_batch(self, images, output: str = "original", *, confidence: bool = False,
                      input_size=None) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """:meth:`predict` for several RGB arrays (of any sizes) in one forward pass.

        Each image is resized to the one network input size; each result is at its own
        image's size ('original') or the network's.
        """
        check_output_resolution(output)
        for rgb in images:
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise ValueError(
                    f"expected an H x W x 3 uint8 RGB array, got {rgb.shape} {rgb.dtype}")
        size = check_input_size(input_size) if input_size else self.input_size
        if len(images) > 1 and hasattr(self.engine, "predict_each"):  # OpenVINO: streams
            labels, scores = self.engine.predict_each(
                (self._input(rgb, size) for rgb in images), len(images), confidence)
        else:
            inputs = [self._input(rgb, size) for rgb in images]
            batch = inputs[0] if len(inputs) == 1 else _concatenate(inputs)
            labels, scores = self.engine.predict_batch(batch, confidence)
        results = []
        for i, rgb in enumerate(images):
            one, one_scores = labels[i], None if scores is None else scores[i]
            if output == "original":
                image_size = (rgb.shape[1], rgb.shape[0])
                one = resize_labels(one, image_size)
                one_scores = None if one_scores is None else resize_labels(one_scores,
                                                                           image_size)
            results.append((one, one_scores))
        return results

    def segment(self, rgb: np.ndarray, output: str = "original") -> np.ndarray:
        """Class ids (uint8) at the image's own size ('original') or the network's ('network')."""
        return self.predict(rgb, output)[0]


def _concatenate(inputs):
    """Stack 1 x 3 x h x w network inputs (NumPy arrays or torch tensors) into N x 3 x h x w."""
    if isinstance(inputs[0], np.ndarray):
        return np.concatenate(inputs)
    import torch

    return torch.cat(inputs)
