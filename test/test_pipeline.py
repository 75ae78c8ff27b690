"""core/runtime/pipeline.py without ROS: one frame in, labels and what was asked for out."""

from __future__ import annotations

import numpy as np
import pytest

from drawn_scenes import road_scene
from lednet_ros.core.runtime.pipeline import FrameSettings, Outputs, Pipeline
from lednet_ros.core.inference.segmenter import Segmenter


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(Segmenter.from_weights(engine="torch"))


def test_a_frame_gives_labels_occupancy_and_only_the_outputs_asked_for(pipeline):
    rgb = road_scene(96, 128)
    before = dict(pipeline.computed)
    result = pipeline.process(rgb, FrameSettings(input_size=(64, 48), grid=(2, 2)))
    assert result.labels.shape == (96, 128) and result.labels.dtype == np.uint8
    assert result.image_size == (128, 96) and result.label_size == (128, 96)
    assert result.occupancy.cell_counts.shape == (2, 2, pipeline.segmenter.num_classes)
    assert result.occupancy.counts.sum() == 96 * 128
    assert result.color_mask is None and result.overlay is None and result.confidence is None
    assert dict(pipeline.computed) == before  # nothing optional computed
    asked = pipeline.process(rgb, FrameSettings(input_size=(64, 48), output_resolution="network"),
                             Outputs(overlay=True, confidence=True))
    assert asked.labels.shape == asked.overlay.shape[:2] == asked.confidence.shape == (48, 64)
    assert pipeline.computed["overlay"] == before.get("overlay", 0) + 1
    assert 0 < asked.inference_s <= asked.total_s


def test_the_input_size_is_the_frames_own_and_no_attribute_is_set(pipeline):
    """Settings carry the input size to Segmenter.predict; the Segmenter keeps its own."""
    own = pipeline.segmenter.input_size
    settings = FrameSettings(input_size=(64, 48))
    pipeline.process(road_scene(96, 128), settings, Outputs())
    assert pipeline.segmenter.input_size == own
    assert "input 64x48" in pipeline.describe(settings)
    assert f"input {own[0]}x{own[1]}" in pipeline.describe(FrameSettings())


@pytest.mark.parametrize("settings, message", [
    (FrameSettings(input_size=(0, 9000)), "input size .* outside 1..8192"),
    (FrameSettings(output_resolution="half"), "output_resolution is 'half'"),
    (FrameSettings(overlay_alpha=1.5), "overlay alpha must be in"),
    (FrameSettings(grid=(0, 3)), "region grid 0x3"),
])
def test_settings_that_cannot_work_are_refused_naming_the_value(pipeline, settings, message):
    with pytest.raises(ValueError, match=message):
        pipeline.check(settings)
