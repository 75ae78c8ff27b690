"""core/runtime/pipeline.py without ROS: one frame in, labels and what was asked for out."""

from __future__ import annotations

import numpy as np
import pytest

from lednet_ros.core.inference.segmenter import Segmenter
from lednet_ros.core.runtime.pipeline import FrameSettings, Outputs, Pipeline

from drawn_scenes import road_scene


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


@pytest.mark.parametrize("values, message", [
    ({"input_size": (0, 9000)}, "input_height is 9000; expected 0 .* to 8192"),
    ({"input_size": (-1, 0)}, "input_width is -1"),
    ({"output_resolution": "half"}, "output_resolution is 'half'"),
    ({"overlay_alpha": 1.5}, "overlay_alpha is 1.5"),
    ({"grid": (0, 3)}, "region grid 0x3"),
    ({"max_image_pixels": 0}, "max_image_pixels is 0"),
])
def test_settings_are_checked_once_where_they_are_built(values, message):
    """A FrameSettings that cannot work does not exist: building it names the value."""
    with pytest.raises(ValueError, match=message):
        FrameSettings(**values)


def test_settings_that_do_not_fit_the_weights_are_refused_naming_the_value(pipeline):
    """What only the weights decide: a region grid larger than network-size labels."""
    pipeline.check(FrameSettings(output_resolution="network", grid=(64, 64)))
    with pytest.raises(ValueError, match="region grid .* does not fit the 8x6 label images"):
        pipeline.check(FrameSettings(input_size=(8, 6), output_resolution="network",
                                     grid=(7, 3)))
    pipeline.check(FrameSettings(input_size=(8, 6), output_resolution="original", grid=(7, 3)))
