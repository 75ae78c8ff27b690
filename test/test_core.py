"""Hand-checked facts of the model and the core.

Parameter counts, shapes, shuffle, checkpoints, CLI.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drawn_scenes import sky_road_card
from lednet_ros.core.inference.checkpoint import CheckpointError, load_weights
from lednet_ros.core.inference.model import LEDNet, channel_shuffle, count_parameters
from lednet_ros.tools.segment_files import main as segment_files


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


def test_offline_entry_point_writes_mask_and_overlay(cityscapes_frame, random_weights, tmp_path):
    import cv2

    assert segment_files([str(cityscapes_frame), "--weights", str(random_weights),
                          "--out", str(tmp_path)]) == 0
    mask = cv2.imread(str(tmp_path / f"{cityscapes_frame.stem}_mask.png"))
    assert mask.shape == (1024, 2048, 3)
    assert (tmp_path / f"{cityscapes_frame.stem}_overlay.png").is_file()


def test_offline_entry_point_refuses_oversized_images_and_goes_on(random_weights, tmp_path,
                                                                   capsys):
    import struct
    import zlib

    import cv2

    def png_declaring(width, height):
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        chunk = b"IHDR" + ihdr
        return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
                + struct.pack(">I", zlib.crc32(chunk)))

    (tmp_path / "bomb.png").write_bytes(png_declaring(30000, 30000))
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), sky_road_card(64, 96)[..., ::-1])
    out = tmp_path / "out"
    assert segment_files([str(tmp_path / "bomb.png"), str(good), "--weights", str(random_weights),
                          "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "bomb.png" in err and "30000x30000" in err and "--max-pixels" in err
    assert not (out / "bomb_mask.png").exists()
    assert cv2.imread(str(out / "good_mask.png")).shape == (64, 96, 3)
    # the limit is the user's to raise or lower
    assert segment_files([str(good), "--weights", str(random_weights), "--out", str(out),
                          "--max-pixels", "1000"]) == 1
    assert "96x64" in capsys.readouterr().err


def test_offline_entry_point_rejects_broken_weights(tmp_path, capsys):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    assert segment_files([str(broken), "--weights", str(broken), "--out", str(tmp_path)]) == 2
    assert "broken.safetensors" in capsys.readouterr().err


def test_colorize_gives_each_class_its_palette_colour():
    from lednet_ros.core.data.classes import CAMVID, palette
    from lednet_ros.core.runtime.rendering import colorize

    colours = palette(CAMVID.colors)
    labels = np.random.default_rng(0).integers(0, 12, (7, 9)).astype(np.uint8)  # 11: void
    mask = colorize(labels, colours)
    assert mask.shape == (7, 9, 3) and mask.dtype == np.uint8
    assert np.array_equal(mask, colours[labels])
    assert np.array_equal(colorize(labels.astype(np.int64), colours), mask)
