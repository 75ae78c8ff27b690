"""Hand-checked facts of LEDNet (core/inference/model.py): parameter counts, shapes, shuffle."""

from __future__ import annotations

import pytest
import torch

from lednet_ros.core.inference.model import LEDNet, channel_shuffle, count_parameters


@pytest.mark.parametrize("classes, decoder, expected", [
    (19, "apn", 922_821), (20, "apn", 923_083), (19, "apn128", 2_284_905),
])
def test_parameter_counts_match_the_paper_model(classes, decoder, expected):
    assert count_parameters(LEDNet(classes, decoder=decoder)) == expected


def test_encoder_parameter_count():
    assert count_parameters(LEDNet(19).encoder) == 911_436


@pytest.mark.parametrize("size", [(257, 513), (64, 128), (7, 9), (1, 1)])
def test_logits_come_out_at_the_input_size(size):
    model = LEDNet(5).eval()
    with torch.inference_mode():
        assert model(torch.rand(1, 3, *size)).shape == (1, 5, *size)


def test_channel_shuffle_interleaves_the_two_halves():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_eval_mode_is_deterministic_and_train_mode_drops_out():
    torch.manual_seed(0)
    model, x = LEDNet(19), torch.rand(1, 3, 64, 128)
    model.eval()
    with torch.inference_mode():
        assert torch.equal(model(x), model(x))
    model.train()  # batch of 2: the global branch's BatchNorm sees one value per image
    batch = x.repeat(2, 1, 1, 1)
    assert not torch.equal(model(batch), model(batch))
