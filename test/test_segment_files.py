"""The offline file tool (tools/segment_files.py, `lednet-segment`): masks, overlays, refusals."""

from __future__ import annotations

from lednet_ros.tools.segment_files import main as segment_files

from drawn_scenes import sky_road_card


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
