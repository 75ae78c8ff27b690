"""LEDNet weights with their metadata in one safetensors file; loading checks everything.

The file holds only tensors and a JSON header, so loading never executes code. The metadata
(JSON, under the ``lednet_ros`` key of the safetensors header) names the architecture, the classes
and their colours, the input normalisation, the training input size, the recipe and the metrics
reached.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only where tensors are read or written
    from lednet_ros.core.inference.model import LEDNet

FORMAT = "lednet_ros.weights"
FORMAT_VERSION = 1
METADATA_KEY = "lednet_ros"
DECODER_VARIANTS = ("apn", "apn128")  # LEDNet's decoders (core.inference.model says what each is)


class CheckpointError(ValueError):
    """A weights file that cannot be used; the message names the file and what is wrong."""


@dataclass
class WeightsMetadata:
    """Everything a user of the weights needs besides the tensors."""

    num_classes: int
    class_names: list[str]
    class_colors: list[list[int]]
    decoder: str = "apn"
    dataset: str = ""
    ignore_index: int = 255
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    input_size: list[int] = field(default_factory=lambda: [1024, 512])  # width, height
    recipe: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    @property
    def reported_mean_iou(self) -> float | None:
        """The mIoU to quote: test, else validation; None where the metadata has neither.

        The test split's mIoU where recorded (metrics["test"]), else the model-selection
        (validation) mIoU of training, unless training also trained on that split
        (metrics["held_out"] false: a score on training frames is not one to quote).
        """
        own = self.metrics if self.metrics.get("held_out", True) else None
        for metrics in (self.metrics.get("test"), self.metrics.get("val"), own):
            miou = metrics.get("mean_iou") if isinstance(metrics, dict) else None
            if isinstance(miou, (int, float)) and math.isfinite(miou):
                return float(miou)
        return None

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)})

    @classmethod
    def from_class_set(cls, class_set, **kwargs) -> "WeightsMetadata":
        return cls(
            num_classes=class_set.num_classes,
            class_names=list(class_set.names),
            class_colors=[list(c) for c in class_set.colors],
            dataset=class_set.name,
            ignore_index=class_set.ignore_index,
            **kwargs,
        )


def _check_metadata(raw: dict, where: str) -> WeightsMetadata:
    def fail(what: str):
        raise CheckpointError(f"{where}: {what}")

    if raw.get("format") != FORMAT:
        fail(f"metadata format is {raw.get('format')!r}, expected {FORMAT!r}")
    if raw.get("format_version") != FORMAT_VERSION:
        fail(f"metadata format_version {raw.get('format_version')!r} is not {FORMAT_VERSION}")
    fields = {k: v for k, v in raw.items() if k not in ("format", "format_version")}
    required = ("num_classes", "class_names", "class_colors")
    missing = [k for k in required if k not in fields]
    if missing:
        fail(f"metadata lacks {', '.join(missing)}")
    known = WeightsMetadata.__dataclass_fields__
    unknown = sorted(set(fields) - set(known))
    if unknown:
        fail(f"metadata has unknown fields {unknown}")
    meta = WeightsMetadata(**fields)
    n = meta.num_classes
    if not _is_int(n) or not 1 <= n <= 255:
        fail(f"num_classes {n!r} is not an integer in [1, 255]")
    if meta.decoder not in DECODER_VARIANTS:
        fail(f"unknown architecture variant {meta.decoder!r} "
             f"(known: {', '.join(DECODER_VARIANTS)})")
    if len(meta.class_names) != n or not all(isinstance(s, str) for s in meta.class_names):
        fail(f"{len(meta.class_names)} class names for {n} classes")
    colors_ok = all(
        isinstance(c, list) and len(c) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in c)
        for c in meta.class_colors
    )
    if len(meta.class_colors) != n or not colors_ok:
        fail(f"class_colors must be {n} [r, g, b] triples of 0..255, got {meta.class_colors!r}")
    for name in ("mean", "std"):
        values = getattr(meta, name)
        if len(values) != 3 or not all(_is_number(v) and math.isfinite(v) for v in values):
            fail(f"{name} must be 3 finite numbers, got {values!r}")
    if not all(v > 0 for v in meta.std):
        fail(f"std must be positive, got {meta.std!r}")
    size = meta.input_size
    if len(size) != 2 or not all(_is_int(v) and v > 0 for v in size):
        fail(f"input_size must be [width, height] of positive integers, got {size!r}")
    if not isinstance(meta.dataset, str):
        fail(f"dataset must be a string, got {meta.dataset!r}")
    if not _is_int(meta.ignore_index):
        fail(f"ignore_index must be an integer, got {meta.ignore_index!r}")
    for name in ("recipe", "metrics"):
        if not isinstance(getattr(meta, name), dict):
            fail(f"{name} must be a JSON object, got {getattr(meta, name)!r}")
    return meta


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def save_weights(path, model: LEDNet, metadata: WeightsMetadata) -> Path:
    """Write weights and metadata atomically (a temporary file renamed into place)."""
    from safetensors.torch import save_file

    if model.num_classes != metadata.num_classes or model.decoder_variant != metadata.decoder:
        raise CheckpointError(
            f"model ({model.num_classes} classes, {model.decoder_variant}) does not match its "
            f"metadata ({metadata.num_classes} classes, {metadata.decoder})"
        )
    _check_metadata(json.loads(metadata.to_json()), str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={METADATA_KEY: metadata.to_json()})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def file_sha256(path) -> str:
    """Return the hex SHA-256 of a file (a weights file's identity in the metadata of another)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_metadata(path) -> WeightsMetadata:
    """Read and check only the metadata of a weights file (no torch needed)."""
    return _open(path, framework="numpy")[1]


def _open(path, framework: str = "pt"):
    from safetensors import safe_open

    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise CheckpointError(f"{where}: no such weights file")
    try:
        handle = safe_open(str(path), framework=framework)
        header = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise CheckpointError(
            f"{where}: not a LEDNet weights file (safetensors) or truncated: {exc}"
        ) from None
    if METADATA_KEY not in header:
        raise CheckpointError(f"{where}: safetensors file without {METADATA_KEY!r} metadata")
    try:
        raw = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{where}: metadata is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{where}: metadata is not a JSON object")
    try:
        return handle, _check_metadata(raw, where)
    except TypeError as exc:
        raise CheckpointError(f"{where}: malformed metadata: {exc}") from None


def load_weights(
    path, *, num_classes: int | None = None, decoder: str | None = None
) -> tuple[LEDNet, WeightsMetadata]:
    """Build the model the file describes and load every tensor, strictly.

    Args:
        path: a file written by :func:`save_weights`.
        num_classes, decoder: when given, the file must match them.

    Raises:
        CheckpointError: naming the file and the mismatch (not a checkpoint, truncated, unknown
            variant, wrong class count, missing/unexpected keys, wrong shapes, NaN/Inf values).
    """
    import torch

    from lednet_ros.core.inference.model import LEDNet

    where = str(path)
    handle, meta = _open(path)
    if num_classes is not None and meta.num_classes != num_classes:
        raise CheckpointError(f"{where}: has {meta.num_classes} classes, expected {num_classes}")
    if decoder is not None and meta.decoder != decoder:
        raise CheckpointError(
            f"{where}: architecture variant {meta.decoder!r}, expected {decoder!r}")
    model = LEDNet(meta.num_classes, decoder=meta.decoder)
    expected = model.state_dict()
    try:
        stored = {k: handle.get_tensor(k) for k in handle.keys()}
    except Exception as exc:
        raise CheckpointError(f"{where}: tensor data unreadable (truncated?): {exc}") from None
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: keys do not match LEDNet({meta.num_classes}, {meta.decoder!r}): "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for key, tensor in stored.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"{where}: {key} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[key].shape)}"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{where}: {key} contains NaN or Inf values")
    model.load_state_dict(stored, strict=True)
    return model, meta


def metrics_summary(meta: WeightsMetadata) -> str:
    """One line describing what the weights reached, for logs."""
    miou = meta.reported_mean_iou
    split = "test" if isinstance(meta.metrics.get("test"), dict) else "val"
    reached = f"{split} mIoU {100 * miou:.1f}%" if miou is not None else "no mIoU"
    return (f"{meta.dataset or 'unknown dataset'}, {meta.num_classes} classes, {meta.decoder}, "
            f"{reached}")
