"""Colour masks and overlays (core/runtime/rendering.py)."""

from __future__ import annotations

import numpy as np
import pytest

from lednet_ros.core.data.classes import CAMVID, palette
from lednet_ros.core.runtime.rendering import check_overlay_alpha, colorize, overlay


def test_colorize_gives_each_class_its_palette_colour():
    colours = palette(CAMVID.colors)
    labels = np.random.default_rng(0).integers(0, 12, (7, 9)).astype(np.uint8)  # 11: void
    mask = colorize(labels, colours)
    assert mask.shape == (7, 9, 3) and mask.dtype == np.uint8
    assert np.array_equal(mask, colours[labels])
    assert np.array_equal(colorize(labels.astype(np.int64), colours), mask)


def test_overlay_blends_by_alpha_and_resizes_the_mask_to_the_image():
    rgb = np.full((4, 6, 3), 100, np.uint8)
    mask = np.zeros((2, 3, 3), np.uint8)
    mask[:, :, 0] = 200
    blended = overlay(rgb, mask, 0.25)
    assert blended.shape == (4, 6, 3)
    assert (blended[..., 0] == 125).all() and (blended[..., 1] == 75).all()
    assert np.array_equal(overlay(rgb, mask, 0.0), rgb)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_overlay_alpha_outside_0_to_1_is_refused_naming_it(alpha):
    with pytest.raises(ValueError, match=f"overlay_alpha is {alpha}"):
        check_overlay_alpha(alpha)
    with pytest.raises(ValueError, match="overlay_alpha"):
        overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint8), alpha)
