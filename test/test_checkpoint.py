"""Weights files (core/inference/checkpoint.py): broken or mismatched files are refused."""

from __future__ import annotations

import pytest

from lednet_ros.core.inference.checkpoint import CheckpointError, load_weights


def test_broken_checkpoint_is_refused_with_its_reason(random_weights, tmp_path):
    data = random_weights.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_weights(truncated)
    with pytest.raises(CheckpointError, match="has 19 classes, expected 11"):
        load_weights(random_weights, num_classes=11)
    with pytest.raises(CheckpointError, match="no such weights file"):
        load_weights(tmp_path / "missing.safetensors")
