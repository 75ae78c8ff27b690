"""The camera-robustness transforms of training/transforms.py (issue 29) and their flags.

Each is reproducible from its rng, keeps uint8 images and labels, changes the image when on and
nothing at strength 0; the geometric ones move labels with the image; the photometric ones leave
labels alone; every flag reaches the training preset and the recipe recorded with the weights.
No ROS, no data outside the test's own; small frames keep it to seconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # training/ (after the install space)

from lednet_ros.core.data.classes import CITYSCAPES, IGNORE_INDEX  # noqa: E402
from lednet_ros.core.inference.checkpoint import read_metadata  # noqa: E402
from training import train, transforms  # noqa: E402
from training.presets import CAMERA_AUGMENTATION_P  # noqa: E402

# Each transform at a strength that visibly changes a 96x64 textured image.
TRANSFORMS_ON = {
    "pitch": transforms.RandomPitch(0.2),
    "aspect": transforms.RandomAspect(1.0),
    "hue": transforms.RandomHue(30),
    "gamma": transforms.RandomGamma(0.5),
    "white_balance": transforms.RandomWhiteBalance(0.3),
    "blur": transforms.RandomBlur(3.0),
    "noise": transforms.RandomNoise(20),
    "jpeg": transforms.RandomJpeg(10),
}
GEOMETRIC = {"pitch", "aspect"}
TRANSFORMS_OFF = [transforms.RandomPitch(0), transforms.RandomAspect(0), transforms.RandomHue(0),
                  transforms.RandomGamma(0), transforms.RandomWhiteBalance(0),
                  transforms.RandomBlur(0), transforms.RandomNoise(0)]
CAMERA_FLAGS = {"--hue": ("hue", 10.0), "--gamma": ("gamma", 0.3),
                "--white-balance": ("white_balance", 0.15), "--blur": ("blur", 1.5),
                "--noise": ("noise", 8.0), "--jpeg-quality": ("jpeg_quality", 30),
                "--aspect-jitter": ("aspect_jitter", 1.0), "--pitch-warp": ("pitch_warp", 0.15)}


def textured_pair(width: int = 96, height: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Return a smooth colourful image with noise, and a label of horizontal bands."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[:height, :width]
    smooth = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    image = np.clip(smooth + rng.normal(0, 25, smooth.shape), 0, 255).astype(np.uint8)
    label = (y * 5 // height).astype(np.uint8)
    return image, label


def rectangle_pair(width: int = 96, height: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Return a white rectangle on black and its label (class 1 on class 0)."""
    image = np.zeros((height, width, 3), np.uint8)
    label = np.zeros((height, width), np.uint8)
    image[20:44, 30:70] = 255
    label[20:44, 30:70] = 1
    return image, label


@pytest.mark.parametrize("name", sorted(TRANSFORMS_ON))
def test_each_transform_is_reproducible_and_keeps_dtypes(name):
    image, label = textured_pair()
    transform = TRANSFORMS_ON[name]
    first = transform(image, label, np.random.default_rng(3))
    second = transform(image, label, np.random.default_rng(3))
    other = transform(image, label, np.random.default_rng(4))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])
    out_image, out_label = first
    assert out_image.dtype == out_label.dtype == np.uint8
    assert out_image.shape == out_label.shape + (3,)
    if name not in GEOMETRIC:
        assert out_image.shape == image.shape and np.array_equal(out_label, label)


@pytest.mark.parametrize("name", sorted(TRANSFORMS_ON))
def test_each_transform_changes_the_image(name):
    """Seeds 0-2 draw strengths of 26-64% of the largest (a blur sigma near 0 is a no-op)."""
    image, label = textured_pair()
    for seed in range(3):
        out_image, _ = TRANSFORMS_ON[name](image, label, np.random.default_rng(seed))
        assert out_image.shape != image.shape or not np.array_equal(out_image, image), seed


@pytest.mark.parametrize("transform", TRANSFORMS_OFF, ids=lambda t: type(t).__name__)
def test_strength_zero_changes_nothing(transform):
    image, label = textured_pair()
    for seed in range(3):
        out_image, out_label = transform(image, label, np.random.default_rng(seed))
        assert np.array_equal(out_image, image) and np.array_equal(out_label, label)


def test_random_apply_applies_with_its_probability():
    image, label = textured_pair()
    never = transforms.RandomApply(transforms.RandomNoise(20), 0.0)
    always = transforms.RandomApply(transforms.RandomNoise(20), 1.0)
    assert np.array_equal(never(image, label, np.random.default_rng(0))[0], image)
    assert not np.array_equal(always(image, label, np.random.default_rng(0))[0], image)
    half = transforms.RandomApply(transforms.RandomNoise(20), 0.5)
    applied = [not np.array_equal(half(image, label, np.random.default_rng(s))[0], image)
               for s in range(200)]
    assert 0.35 < np.mean(applied) < 0.65


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
def test_geometric_transforms_move_the_label_with_the_image(name):
    image, label = rectangle_pair()
    for seed in range(4):
        out_image, out_label = TRANSFORMS_ON[name](image, label, np.random.default_rng(seed))
        bright, labelled = out_image[..., 0] > 127, out_label == 1
        iou = (bright & labelled).sum() / (bright | labelled).sum()
        assert iou > 0.9, (seed, iou)
        assert set(np.unique(out_label)) <= {0, 1, IGNORE_INDEX}  # nearest: no blended ids


def test_pitch_moves_the_centre_row_by_the_drawn_fraction_and_fills_255():
    width, height, fraction = 96, 64, 0.2
    image = np.zeros((height, width, 3), np.uint8)
    image[height // 2] = 255
    label = np.zeros((height, width), np.uint8)
    for seed in range(5):
        drawn = np.random.default_rng(seed).uniform(-1, 1)
        out_image, out_label = transforms.RandomPitch(fraction)(image, label,
                                                                np.random.default_rng(seed))
        row = np.average(np.arange(height), weights=out_image[:, width // 2, 0].astype(float))
        assert row - height // 2 == pytest.approx(-drawn * fraction * height, abs=0.5)
        if abs(drawn * fraction * height) >= 1:
            uncovered = 0 if drawn < 0 else -1  # content moved down: the top row is uncovered
            assert (out_label[uncovered] == IGNORE_INDEX).all()
            assert (out_image[uncovered] == 0).all()


def test_aspect_changes_the_ratio_by_the_drawn_factor_and_keeps_the_area():
    image, label = textured_pair(120, 80)
    for seed in range(5):
        drawn = np.random.default_rng(seed).uniform(-1, 1)
        out_image, out_label = transforms.RandomAspect(1.0)(image, label,
                                                            np.random.default_rng(seed))
        height, width = out_label.shape
        assert width / height / 1.5 == pytest.approx(2.0 ** drawn, rel=0.03)
        assert width * height == pytest.approx(120 * 80, rel=0.03)


def test_hue_keeps_greys_and_noise_stays_within_its_largest_std():
    grey = np.repeat(np.arange(0, 256, 4, dtype=np.uint8)[:, None, None], 3, axis=2)
    grey = np.repeat(grey, 8, axis=1)
    label = np.zeros(grey.shape[:2], np.uint8)
    out, _ = transforms.RandomHue(90)(grey, label, np.random.default_rng(0))
    assert np.abs(out.astype(int) - grey).max() <= 1
    image = np.full((64, 64, 3), 128, np.uint8)
    for seed in range(5):
        noisy, _ = transforms.RandomNoise(8)(image, label[:64, :64], np.random.default_rng(seed))
        assert (noisy.astype(float) - 128).std() < 8.5


def test_jpeg_quality_is_drawn_from_its_range():
    image, label = textured_pair()
    errors = {}
    for quality in (10, 95):
        out, _ = transforms.RandomJpeg(quality)(image, label, np.random.default_rng(0))
        errors[quality] = np.abs(out.astype(int) - image).mean()
    assert 0 < errors[95] < errors[10] < 40


def camera_args(*extra: str):
    return train.get_args(["--data-path", "x", "--resize", "80x40", "--crop", "32x16", *extra])


def test_camera_flags_default_to_off_and_leave_the_pipeline_as_before():
    args = camera_args()
    assert all(getattr(args, attr) == 0 for attr, _ in CAMERA_FLAGS.values())
    assert not args.save_evaluated
    steps = train.get_transform(args, CITYSCAPES, train=True).transforms
    assert [type(step) for step in steps] == [
        transforms.Resize, transforms.RandomCrop, transforms.RandomHorizontalFlip,
        transforms.RandomTranslate, transforms.ToTensor]


def test_every_camera_flag_reaches_the_preset_in_order():
    flags = [str(part) for flag, (_, value) in CAMERA_FLAGS.items() for part in (flag, value)]
    steps = train.get_transform(camera_args(*flags), CITYSCAPES, train=True).transforms
    inner = [getattr(step, "transform", step) for step in steps]
    assert [type(step) for step in inner] == [
        transforms.Resize, transforms.RandomPitch, transforms.RandomAspect,
        transforms.RandomCrop, transforms.RandomHorizontalFlip, transforms.RandomTranslate,
        transforms.RandomBlur, transforms.RandomNoise, transforms.RandomWhiteBalance,
        transforms.RandomGamma, transforms.RandomHue, transforms.RandomJpeg, transforms.ToTensor]
    _, pitch, aspect, _, _, _, blur, noise, balance, gamma, hue, jpeg, _ = inner
    assert (pitch.fraction, aspect.strength, blur.max_sigma, noise.max_std) == (0.15, 1.0, 1.5, 8)
    assert (balance.strength, gamma.strength, hue.degrees, jpeg.min_quality) == (0.15, 0.3, 10, 30)
    sometimes = [step.p for step in steps if isinstance(step, transforms.RandomApply)]
    assert sometimes == [CAMERA_AUGMENTATION_P] * 5  # pitch, aspect, blur, noise, JPEG


@pytest.mark.parametrize("bad", [["--gamma", "1.0"], ["--white-balance", "-0.1"],
                                 ["--jpeg-quality", "96"], ["--pitch-warp", "1.5"],
                                 ["--noise", "-1"]])
def test_out_of_range_camera_flags_are_refused_by_name(bad, capsys):
    with pytest.raises(SystemExit):
        camera_args(*bad)
    error = capsys.readouterr().err
    assert f"{bad[0]} {bad[1] if bad[0] == '--jpeg-quality' else float(bad[1])}: expected" in error


@pytest.fixture
def one_thread():
    """Train with one torch thread (seconds, not tens, on cores shared with other work)."""
    threads = torch.get_num_threads()
    yield "1"
    torch.set_num_threads(threads)


def test_camera_flags_and_their_defaults_are_recorded(tiny_cityscapes, tmp_path, capsys,
                                                      one_thread):
    """A one-iteration run: weights metadata and the log's settings line hold every flag."""
    out = tmp_path / "run"
    train.main(["--dataset", "cityscapes", "--data-path", str(tiny_cityscapes),
                "--resize", "64x32", "--crop", "64x32", "--batch-size", "2",
                "--output-dir", str(out), "--epochs", "1", "--max-iters-per-epoch", "1",
                "--class-weights", "none", "--threads", one_thread, "--hue", "5",
                "--aspect-jitter", "0.5", "--jpeg-quality", "40", "--save-evaluated"])
    settings_line = next(line for line in capsys.readouterr().out.splitlines()
                         if line.startswith("settings: "))
    settings = json.loads(settings_line[len("settings: "):])
    set_values = {"hue": 5.0, "aspect_jitter": 0.5, "jpeg_quality": 40}
    for name in ("final.safetensors", "epoch_001.safetensors"):
        recipe = read_metadata(out / name).recipe
        for attr, _ in CAMERA_FLAGS.values():
            assert recipe[attr] == settings[attr] == set_values.get(attr, 0), (name, attr)
        assert recipe["save_evaluated"] is True
