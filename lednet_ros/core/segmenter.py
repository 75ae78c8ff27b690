"""A Segmenter: LEDNet weights + device + engine + precision.

One call from an RGB array to class ids (and, when asked, their confidence).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from lednet_ros.core.checkpoint import WeightsMetadata, load_weights
from lednet_ros.core.engines import make_engine
from lednet_ros.core.engines import PRECISIONS  # noqa: F401 (the node's parameters import it here)
from lednet_ros.core.classes import palette
from lednet_ros.core.model import LEDNet
from lednet_ros.core.processing import preprocess, resize_labels

OUTPUT_RESOLUTIONS = ("original", "network")  # labels at the image's size or the network's
MAX_INPUT_SIDE = 8192


def default_weights_path() -> Path:
    """Return the weights shipped with the package (trained on CamVid by training/train.py)."""
    return Path(__file__).resolve().parents[1] / "weights" / "lednet_camvid.safetensors"


def resolve_device(request: str) -> torch.device:
    """Map 'auto' to cuda if available else cpu; 'cpu'; 'cuda' / 'cuda:N' where it exists."""
    if request == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if request == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", request)
    if not match:
        raise ValueError(f"unknown device {request!r} (expected auto, cpu, cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {request!r} requested but CUDA is not available on this machine")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {request!r} requested but only {torch.cuda.device_count()} "
                         "CUDA device(s) exist")
    return torch.device("cuda", index)


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
        precision: 'auto' (the fastest whose labels agree with fp32 on at least 99.5% of pixels:
            bf16 on CPUs with native bf16, fp32 elsewhere), 'fp32' (exact), 'fp16' (CUDA only)
            or 'bf16' (CPUs with avx512_bf16 or amx_bf16 only).
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
        model: LEDNet,
        metadata: WeightsMetadata,
        *,
        device: str = "auto",
        precision: str = "auto",
        input_size=None,
        engine: str = "auto",
    ):
        self.device = resolve_device(device)
        self.metadata = metadata
        self.palette = palette(metadata.class_colors)
        self.input_size = check_input_size(input_size or metadata.input_size)
        self.engine = make_engine(engine, model, self.device, precision)
        self.precision = self.engine.precision
        self.choice_reason = self.engine.reason

    @classmethod
    def from_weights(cls, path=None, **kwargs) -> "Segmenter":
        """Load a weights file (default: the packaged weights) and wrap it."""
        model, metadata = load_weights(path or default_weights_path())
        return cls(model, metadata, **kwargs)

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata.class_names)

    @property
    def num_classes(self) -> int:
        return self.metadata.num_classes

    def describe(self) -> str:
        """Describe in one line: model, device, engine, precision, input size, and why."""
        w, h = self.input_size
        return (f"LEDNet ({self.metadata.decoder}) on {self.device}, engine {self.engine.name}, "
                f"{self.precision}, input {w}x{h} ({self.choice_reason})")

    def _input(self, rgb: np.ndarray) -> torch.Tensor:
        return preprocess(rgb, self.input_size, self.metadata.mean, self.metadata.std,
                          self.engine.input_device, self.engine.input_dtype)

    @torch.inference_mode()
    def logits(self, rgb: np.ndarray) -> torch.Tensor:
        """1 x C x h x w logits at the network's input size for an H x W x 3 uint8 RGB array."""
        return self.engine(self._input(rgb))

    def predict(self, rgb: np.ndarray, output: str = "original", *, confidence: bool = False):
        """(labels, confidence) for an H x W x 3 uint8 RGB array, from one forward pass.

        Args:
            rgb: the image.
            output: 'original' (the image's own size) or 'network' (the network's input size).
            confidence: also compute the confidence (softmax maximum x 255); costs nothing when
                False.

        Returns:
            labels: uint8 class ids; confidence: uint8 or None (when not asked). Both resized
            to the output size by nearest neighbour, so each pixel's confidence is that of its
            own label.
        """
        if output not in OUTPUT_RESOLUTIONS:
            raise ValueError(f"output resolution must be 'original' or 'network', got {output!r}")
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 RGB array, got {rgb.shape} {rgb.dtype}")
        with torch.inference_mode():
            labels, scores = self.engine.predict(self._input(rgb), confidence)
        if output == "original":
            size = (rgb.shape[1], rgb.shape[0])
            labels = resize_labels(labels, size)
            scores = None if scores is None else resize_labels(scores, size)
        return labels, scores

    def segment(self, rgb: np.ndarray, output: str = "original") -> np.ndarray:
        """Class ids (uint8) at the image's own size ('original') or the network's ('network')."""
        return self.predict(rgb, output)[0]
