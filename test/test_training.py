"""training/train.py and training/export.py on tiny Cityscapes trees the tests write themselves.

A short run's loss falls and its log and curves are written; an interrupted run resumes to the same
weights bit for bit, also from a last.pt written before the lr schedule was checkpointed; the poly
schedule gives the formula's lr values; two gloo processes train together and sum their confusion
matrices; --test-only reproduces the recorded mIoU; --amp trains in bf16 only on a CPU that has it;
the exported weights load in the Segmenter with their recipe and metrics; ONNX agrees with PyTorch.
No ROS. Frames of 64x32 keep every run to seconds.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.append(str(Path(__file__).resolve().parents[1]))  # training/ (after the install space)

from conftest import write_tiny_cityscapes  # noqa: E402

from lednet_ros.core.data.classes import CITYSCAPES  # noqa: E402
from lednet_ros.core.data.datasets import Cityscapes  # noqa: E402
from lednet_ros.core.evaluation.metrics import ConfusionMatrix  # noqa: E402
from lednet_ros.core.inference import cpu  # noqa: E402
from lednet_ros.core.inference.checkpoint import (  # noqa: E402
    file_sha256, load_weights, read_metadata,
)
from lednet_ros.core.inference.model import LEDNet  # noqa: E402
from lednet_ros.core.inference.onnx_cache import graphs_beside, graphs_match  # noqa: E402
from lednet_ros.core.inference.segmenter import Segmenter  # noqa: E402
from training import export, losses, train, transforms  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TRAIN_PY = REPO / "training" / "train.py"


def tiny_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--dataset", "cityscapes", "--data-path", str(data), "--resize", "64x32",
            "--batch-size", "2", "--output-dir", str(out), *extra]


def read_log(out: Path) -> list[dict]:
    with open(out / "log.csv") as f:
        return list(csv.DictReader(f))


def state_dicts_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def optimizer_states_equal(a: dict, b: dict) -> bool:
    if a["param_groups"] != b["param_groups"] or a["state"].keys() != b["state"].keys():
        return False
    return all(state_dicts_equal(a["state"][k], b["state"][k]) for k in a["state"])


@pytest.fixture(scope="module")
def trained_run(tiny_cityscapes, tmp_path_factory) -> Path:
    """40 iterations (10 epochs of 4 batches of 2) on the tiny tree, without class weights."""
    out = tmp_path_factory.mktemp("run")
    train.main(tiny_args(tiny_cityscapes, out, "--epochs", "10", "--lr", "1e-2",
                         "--class-weights", "none"))
    return out


def test_the_papers_recipe_is_the_default():
    args = train.get_args(["--data-path", "/data/cityscapes"])
    assert args.dataset == "cityscapes" and args.resize == args.eval_size == (1024, 512)
    assert (args.batch_size, args.epochs, args.lr, args.weight_decay) == (5, 300, 5e-4, 1e-4)
    assert (args.poly_power, args.translate, args.stage, args.decoder) == (0.9, 2, "full", "apn")
    camvid = train.get_args(["--dataset", "camvid", "--data-path", "/data/camvid"])
    assert camvid.resize is None and camvid.eval_size is None  # CamVid's own 480x360


def test_paper_class_weights_are_for_cityscapes_only(camvid_root, tmp_path):
    with pytest.raises(SystemExit, match="--class-weights paper is for Cityscapes"):
        train.main(["--dataset", "camvid", "--data-path", str(camvid_root), "--output-dir",
                    str(tmp_path), "--class-weights", "paper"])


def test_short_run_loss_falls_and_log_and_curves_are_written(trained_run):
    rows = read_log(trained_run)
    assert [int(r["epoch"]) for r in rows] == list(range(1, 11))
    losses = [float(r["loss"]) for r in rows]
    # falls steadily: run to run (thread scheduling) the last epoch lands at 0.6-0.72 of the first
    assert losses[-1] < 0.8 * losses[0] and max(losses[-3:]) < min(losses[:3]), losses
    lrs = [float(r["lr"]) for r in rows]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < 1e-2  # poly decay
    assert all(0.0 <= float(r["val_miou"]) <= 1.0 for r in rows)
    curves = cv2.imread(str(trained_run / "curves.png"))
    assert curves is not None and curves.shape[0] > 100 and curves.shape[1] > 300


def test_best_weights_record_recipe_and_metrics(trained_run):
    meta = read_metadata(trained_run / "best.safetensors")
    assert meta.dataset == "cityscapes" and meta.class_names == list(CITYSCAPES.names)
    assert meta.input_size == [64, 32]
    recipe = meta.recipe
    assert (recipe["lr"], recipe["epochs"], recipe["batch_size"]) == (1e-2, 10, 2)
    assert (recipe["weight_decay"], recipe["poly_power"], recipe["world_size"]) == (1e-4, 0.9, 1)
    assert recipe["class_weights"] == "none" and recipe["resize"] == [64, 32]
    best = max(float(r["val_miou"]) for r in read_log(trained_run))
    assert meta.metrics["mean_iou"] == pytest.approx(best, abs=1e-12)
    assert set(meta.metrics["per_class_iou"]) == set(CITYSCAPES.names)


def test_final_weights_are_the_last_epochs(trained_run):
    final = read_metadata(trained_run / "final.safetensors")
    last_row = read_log(trained_run)[-1]
    assert final.metrics["epoch"] == 10 == int(last_row["epoch"])
    assert final.metrics["held_out"] is True
    assert final.metrics["mean_iou"] == pytest.approx(float(last_row["val_miou"]), abs=1e-12)
    state = torch.load(trained_run / "last.pt", weights_only=True)
    final_model, _ = load_weights(trained_run / "final.safetensors")
    assert state_dicts_equal(final_model.state_dict(), state["model"])


def test_train_plus_val_trains_on_both_splits(tiny_cityscapes, tmp_path):
    train.main(tiny_args(tiny_cityscapes, tmp_path, "--epochs", "1", "--train-split", "train+val",
                         "--class-weights", "none"))
    final = read_metadata(tmp_path / "final.safetensors")
    assert final.recipe["train_split"] == "train+val"
    # Its val score is on frames it trained on: recorded so, never quoted as the weights' mIoU.
    assert final.metrics["held_out"] is False and final.reported_mean_iou is None
    # It exports, and its test score (here on the tiny val split again) is the one quoted.
    export.main([str(tmp_path / "final.safetensors"), "--output",
                 str(tmp_path / "out.safetensors"), "--test-data-path", str(tiny_cityscapes),
                 "--test-split", "val"])
    exported = read_metadata(tmp_path / "out.safetensors")
    assert exported.reported_mean_iou == exported.metrics["test"]["mean_iou"]
    # 8 train + 2 val frames in batches of 2: 5 iterations (4 on train alone)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["lr_scheduler"]["last_epoch"] == 5


def test_test_only_reproduces_the_recorded_miou(trained_run, tiny_cityscapes, capsys):
    miou = train.main(tiny_args(tiny_cityscapes, trained_run, "--test-only"))
    assert miou == read_metadata(trained_run / "best.safetensors").metrics["mean_iou"]
    report = capsys.readouterr().out
    assert "best.safetensors" in report and f"mIoU {100 * miou:.2f}%" in report
    assert "road" in report and "bicycle" in report


def test_test_only_without_weights_names_the_file(tiny_cityscapes, tmp_path):
    with pytest.raises(SystemExit, match=f"{tmp_path / 'best.safetensors'}: no such weights file"):
        train.main(tiny_args(tiny_cityscapes, tmp_path, "--test-only"))


def test_fewer_images_than_a_batch_is_an_error(tiny_cityscapes, tmp_path):
    with pytest.raises(SystemExit, match="8 train images: fewer than one batch of 9"):
        train.main(tiny_args(tiny_cityscapes, tmp_path, "--batch-size", "9"))


def test_encoder_stage_then_full_stage_from_its_encoder(tiny_cityscapes, tmp_path):
    encoder_run, full_run = tmp_path / "encoder", tmp_path / "full"
    train.main(tiny_args(tiny_cityscapes, encoder_run, "--stage", "encoder", "--epochs", "1"))
    assert not (encoder_run / "best.safetensors").exists()  # the encoder stage is not a model
    state = torch.load(encoder_run / "last.pt", weights_only=True)["model"]
    model = LEDNet(19)
    train.load_encoder(model, encoder_run / "last.pt")
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, state[f"encoder.{key}"]), key
    train.main(tiny_args(tiny_cityscapes, full_run, "--epochs", "1", "--class-weights", "paper",
                         "--encoder-weights", str(encoder_run / "last.pt")))
    recipe = read_metadata(full_run / "best.safetensors").recipe
    assert recipe["encoder_weights"] == str(encoder_run / "last.pt")
    assert recipe["class_weight_values"] == pytest.approx(train.PAPER_CITYSCAPES_WEIGHTS)
    with pytest.raises(SystemExit, match="--encoder-weights .*best.safetensors"):
        train.load_encoder(model, full_run / "best.safetensors")


# Resume: 24 frames make 12 iterations an epoch, long enough to kill a run inside its second epoch.

@pytest.fixture(scope="module")
def resume_tree(tmp_path_factory) -> Path:
    return write_tiny_cityscapes(tmp_path_factory.mktemp("resume_tree"), train=24, seed=1)


RESUME_ARGS = ("--epochs", "2", "--translate", "2", "--seed", "3")


@pytest.fixture(scope="module")
def uninterrupted_run(resume_tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    train.main(tiny_args(resume_tree, out, *RESUME_ARGS))
    return out


@pytest.fixture(scope="module")
def uninterrupted(uninterrupted_run) -> dict:
    return torch.load(uninterrupted_run / "last.pt", weights_only=True)


def assert_same_training_state(state: dict, reference: dict,
                               schedule_keys=("base_lrs", "last_epoch", "_last_lr", "_step_count",
                                              "lr_lambdas")) -> None:
    assert state["epoch"] == reference["epoch"] == 1
    assert state_dicts_equal(state["model"], reference["model"])
    assert optimizer_states_equal(state["optimizer"], reference["optimizer"])
    assert state["best_miou"] == reference["best_miou"]
    assert reference["lr_scheduler"]["last_epoch"] == 24  # 2 epochs of 12 iterations
    for key in schedule_keys:
        assert state["lr_scheduler"][key] == reference["lr_scheduler"][key], key


def test_resume_after_stopping_gives_bitwise_the_same_weights(resume_tree, tmp_path,
                                                              uninterrupted):
    train.main(tiny_args(resume_tree, tmp_path, *RESUME_ARGS, "--stop-after-epochs", "1"))
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 0
    assert len(read_log(tmp_path)) == 1
    train.main(tiny_args(resume_tree, tmp_path, *RESUME_ARGS, "--resume"))
    assert_same_training_state(torch.load(tmp_path / "last.pt", weights_only=True), uninterrupted)
    assert [int(r["epoch"]) for r in read_log(tmp_path)] == [1, 2]


def test_resume_after_a_kill_gives_bitwise_the_same_weights(resume_tree, tmp_path, uninterrupted):
    """SIGKILL as soon as the first epoch's last.pt is written, then --resume."""
    last = tmp_path / "last.pt"
    command = [sys.executable, str(TRAIN_PY), *tiny_args(resume_tree, tmp_path, *RESUME_ARGS)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while not last.exists() and process.poll() is None:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        output = process.communicate(timeout=60)[0].decode()
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{output}"
    assert torch.load(last, weights_only=True)["epoch"] == 0  # killed inside the second epoch
    train.main(tiny_args(resume_tree, tmp_path, *RESUME_ARGS, "--resume"))
    assert_same_training_state(torch.load(last, weights_only=True), uninterrupted)


def poly(base_lr: float, iteration: int, max_iter: int, power: float = 0.9) -> float:
    """Return the poly lr of the training code before it used torch.optim.lr_scheduler."""
    return base_lr * (1 - min(iteration, max_iter - 1) / max_iter) ** power


def write_state_of_the_old_code(last: Path, base_lr: float, max_iter: int) -> None:
    """Rewrite a new last.pt as the code before the scheduler wrote it.

    No lr_scheduler entry, no initial_lr in the optimizer's groups, whose lr is the one of the
    epoch's last iteration.
    """
    state = torch.load(last, weights_only=True)
    iteration = state.pop("lr_scheduler")["last_epoch"]
    for group in state["optimizer"]["param_groups"]:
        del group["initial_lr"]
        group["lr"] = poly(base_lr, iteration - 1, max_iter)
    assert set(state) == {"model", "optimizer", "scaler", "epoch", "best_miou", "args"}
    torch.save(state, last)


def test_resume_from_a_last_pt_without_lr_scheduler_state(resume_tree, tmp_path, uninterrupted,
                                                          uninterrupted_run, capsys):
    """Resume a last.pt of the code before the scheduler was checkpointed.

    Positioned from the epoch count, the run continues to the uninterrupted run's state and lr
    values.
    """
    train.main(tiny_args(resume_tree, tmp_path, *RESUME_ARGS, "--stop-after-epochs", "1"))
    write_state_of_the_old_code(tmp_path / "last.pt", base_lr=5e-4, max_iter=24)
    capsys.readouterr()
    train.main(tiny_args(resume_tree, tmp_path, *RESUME_ARGS, "--resume"))
    assert "lr schedule positioned from the epoch count (iteration 12)" in capsys.readouterr().out
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert_same_training_state(state, uninterrupted, ("base_lrs", "last_epoch", "_last_lr"))
    lrs = [float(r["lr"]) for r in read_log(tmp_path)]
    assert lrs == [float(r["lr"]) for r in read_log(uninterrupted_run)]
    assert lrs == [poly(5e-4, 11, 24), poly(5e-4, 23, 24)]


def test_poly_schedule_gives_the_formulas_lr_at_every_iteration():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=1e-2)
    scheduler = train.poly_lr_scheduler(optimizer, 1e-2, total_iters=50, power=0.9)
    lrs = []
    for _ in range(52):  # two past the end: the last value stays (clamped), never 0
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == [poly(1e-2, i, 50) for i in range(52)]  # bit for bit
    assert lrs[49] == lrs[50] == lrs[51] > 0
    # Built at iteration 30, as a resumed run is, from an optimizer holding another lr.
    optimizer.param_groups[0]["lr"] = 123.0
    resumed = train.poly_lr_scheduler(optimizer, 1e-2, total_iters=50, power=0.9,
                                      start_iteration=30)
    assert optimizer.param_groups[0]["lr"] == lrs[30] and resumed.last_epoch == 30


def test_resume_with_another_epoch_count_follows_the_new_schedule(tiny_cityscapes, tmp_path,
                                                                  capsys):
    """Resume with another --epochs (as the README's CamVid run was).

    The recorded schedule gives way to the command's, as the lr always followed the command line.
    """
    args = tiny_args(tiny_cityscapes, tmp_path, "--class-weights", "none", "--translate", "0")
    train.main([*args, "--epochs", "2", "--stop-after-epochs", "1"])
    capsys.readouterr()
    train.main([*args, "--epochs", "3", "--stop-after-epochs", "1", "--resume"])
    assert "lr schedule positioned from the epoch count (iteration 4" in capsys.readouterr().out
    assert [float(r["lr"]) for r in read_log(tmp_path)] == [poly(5e-4, 3, 8), poly(5e-4, 7, 12)]
    schedule = torch.load(tmp_path / "last.pt", weights_only=True)["lr_scheduler"]
    assert schedule["last_epoch"] == 8 and schedule["_last_lr"] == [poly(5e-4, 8, 12)]


def test_resume_without_a_checkpoint_names_it(tiny_cityscapes, tmp_path):
    with pytest.raises(SystemExit, match=f"--resume: {tmp_path / 'last.pt'} does not exist"):
        train.main(tiny_args(tiny_cityscapes, tmp_path, "--resume"))


class _CreatesMarker:
    """Unpickling this would run os.system: the weights-only loader must refuse it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("content", ["pickle", "bytes", "empty"])
def test_resume_refuses_a_bad_state_without_running_it(tiny_cityscapes, tmp_path, content):
    marker = tmp_path / "code_ran"
    last = tmp_path / "last.pt"
    if content == "pickle":
        torch.save({"model": _CreatesMarker(marker)}, last)
    else:
        last.write_bytes(b"" if content == "empty" else bytes(range(256)) * 8)
    with pytest.raises(SystemExit, match=r"--resume: .*last.pt is not a training state"):
        train.main(tiny_args(tiny_cityscapes, tmp_path, "--resume"))
    assert not marker.exists()


def test_data_loading_workers_give_the_same_batches(tiny_cityscapes):
    args = train.get_args(tiny_args(tiny_cityscapes, Path("unused")))
    dataset = Cityscapes(tiny_cityscapes, "train",
                         train.get_transform(args, CITYSCAPES, train=True))
    order = train.epoch_order(len(dataset), epoch=1, seed=0, rank=0, world=1)
    before = torch.get_rng_state()
    in_process = list(train.batches(dataset, order, 2, seed=0, epoch=1, workers=0))
    in_workers = list(train.batches(dataset, order, 2, seed=0, epoch=1, workers=2))
    assert torch.equal(torch.get_rng_state(), before)  # dropout's random stream is untouched
    assert len(in_process) == 4
    for (x, y), (wx, wy) in zip(in_process, in_workers, strict=True):
        assert torch.equal(x, wx) and torch.equal(y, wy)


def test_every_augmentation_option_reaches_the_presets():
    args = train.get_args(["--data-path", "x", "--resize", "80x40", "--scale-jitter", "0.5", "1.5",
                           "--crop", "32x16", "--translate", "3", "--color-jitter", "0.3",
                           "--mean", "0.1", "0.2", "0.3", "--std", "0.5", "0.25", "2",
                           "--eval-size", "40x20"])
    steps = train.get_transform(args, CITYSCAPES, train=True).transforms
    assert [type(step) for step in steps] == [
        transforms.Resize, transforms.RandomScale, transforms.RandomCrop,
        transforms.RandomHorizontalFlip, transforms.RandomTranslate, transforms.ColorJitter,
        transforms.ToTensor]
    resize, scale, crop, _, translate, jitter, to_tensor = steps
    assert resize.size == (80, 40) and (scale.low, scale.high) == (0.5, 1.5)
    assert (crop.width, crop.height) == (32, 16) and translate.pixels == 3
    assert jitter.strength == 0.3 and to_tensor.void_id == 255
    assert to_tensor.mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert to_tensor.std.flatten().tolist() == pytest.approx([0.5, 0.25, 2.0])
    eval_steps = train.get_transform(args, CITYSCAPES, train=False).transforms
    assert [type(step) for step in eval_steps] == [transforms.Resize, transforms.ToTensor]
    assert eval_steps[0].size == (40, 20)
    # CamVid's defaults: no resize, crop, scale or colour jitter; its void id 11 mapped to 255.
    camvid = train.get_args(["--dataset", "camvid", "--data-path", "x"])
    class_set = train.DATASETS["camvid"].class_set
    steps = train.get_transform(camvid, class_set, train=True).transforms
    assert [type(step) for step in steps] == [
        transforms.RandomHorizontalFlip, transforms.RandomTranslate, transforms.ToTensor]
    assert steps[-1].void_id == class_set.ignore_index == 11
    assert [type(step) for step in train.get_transform(camvid, class_set, train=False).transforms
            ] == [transforms.ToTensor]


def test_lovasz_softmax_of_one_hot_outputs_is_the_mean_of_one_minus_iou():
    """On hard predictions the loss is 1 - IoU per class in the labels, averaged."""
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(0, 4, (2, 12, 16)))
    labels[0, :3] = 255  # ignored rows
    labels[labels == 3] = 2  # class 3 absent from the labels: left out of the mean
    prediction = torch.where(torch.from_numpy(rng.random((2, 12, 16)) < 0.7), labels,
                             torch.from_numpy(rng.integers(0, 5, (2, 12, 16))))
    prediction[labels == 255] = 4
    logits = 50.0 * F.one_hot(prediction, 5).permute(0, 3, 1, 2).double()
    cm = ConfusionMatrix(5)
    cm.update(labels, prediction)
    expected = np.mean([1.0 - cm.iou()[c] for c in (0, 1, 2)])
    assert losses.lovasz_softmax(logits, labels, 255).item() == pytest.approx(expected, abs=1e-6)


def test_lovasz_softmax_ignores_ignored_pixels_and_has_a_gradient():
    rng = np.random.default_rng(1)
    labels = torch.from_numpy(rng.integers(0, 3, (1, 8, 8)))
    labels[0, 4:] = 11
    logits = torch.from_numpy(rng.normal(size=(1, 3, 8, 8))).requires_grad_()
    loss = losses.lovasz_softmax(logits, labels, 11)
    loss.backward()
    assert 0.0 < loss.item() < 1.0
    assert logits.grad[..., :4, :].abs().sum() > 0 and logits.grad[..., 4:, :].abs().sum() == 0
    changed = logits.detach().clone()
    changed[..., 4:, :] = torch.from_numpy(rng.normal(size=(1, 3, 4, 8)))
    assert losses.lovasz_softmax(changed, labels, 11).item() == pytest.approx(loss.item())
    everything_ignored = torch.full_like(labels, 11)
    assert losses.lovasz_softmax(logits, everything_ignored, 11).item() == 0.0


def test_segmentation_loss_adds_the_weighted_lovasz_term():
    rng = np.random.default_rng(2)
    labels = torch.from_numpy(rng.integers(0, 3, (2, 6, 6)))
    logits = torch.from_numpy(rng.normal(size=(2, 3, 6, 6)))
    cross_entropy = F.cross_entropy(logits, labels, ignore_index=255)
    assert losses.SegmentationLoss(255)(logits, labels).item() == pytest.approx(
        cross_entropy.item())
    lovasz = losses.lovasz_softmax(logits, labels, 255)
    assert losses.SegmentationLoss(255, lovasz_weight=0.5, lovasz_stride=1)(
        logits, labels).item() == pytest.approx(cross_entropy.item() + 0.5 * lovasz.item())
    every_second = losses.lovasz_softmax(logits[..., ::2, ::2], labels[..., ::2, ::2], 255)
    assert losses.SegmentationLoss(255, lovasz_weight=0.5)(logits, labels).item() == (
        pytest.approx(cross_entropy.item() + 0.5 * every_second.item()))


def test_lovasz_weight_reaches_the_training_loss_and_the_recipe(tiny_cityscapes, tmp_path):
    """One batch before any update: the same cross-entropy, plus the Lovász term where asked."""
    first_losses = {}
    for weight in ("0", "0.5"):
        run = tmp_path / f"lovasz_{weight}"
        train.main(["--data-path", str(tiny_cityscapes), "--output-dir", str(run), "--epochs", "1",
                    "--batch-size", "4", "--resize", "64x32", "--max-iters-per-epoch", "1",
                    "--lovasz-weight", weight, "--class-weights", "none"])
        with open(run / "log.csv") as f:
            first_losses[weight] = float(next(csv.DictReader(f))["loss"])
        assert read_metadata(run / "final.safetensors").recipe["lovasz_weight"] == float(weight)
    assert first_losses["0.5"] > first_losses["0"] + 0.05  # half a Lovász loss, near 1 untrained


def test_confusion_matrix_reduction_is_a_no_op_in_one_process():
    matrix = ConfusionMatrix(3)
    matrix.update(torch.tensor([0, 1, 2, 255]), torch.tensor([0, 2, 2, 1]))
    before = matrix.matrix.clone()
    matrix.reduce_from_all_processes()
    assert not torch.distributed.is_initialized() and torch.equal(matrix.matrix, before)


# Run as a script of its own: torch.multiprocessing.spawn from inside the pytest process (which
# by then holds DDS, OpenVINO and ONNX Runtime threads of earlier tests) ended the whole test run
# with SIGSEGV on an AMD EPYC (Zen 4), though the test passed alone.
REDUCE_IN_TWO_PROCESSES = """
import sys
from pathlib import Path

import torch

from lednet_ros.core.evaluation.metrics import ConfusionMatrix


def reduce_in_process(rank, init_file, results):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=2)
    try:
        matrix = ConfusionMatrix(3)
        matrix.update(torch.tensor([rank, 2, 255]), torch.tensor([rank, 1, 0]))
        matrix.reduce_from_all_processes()
        torch.save(matrix.matrix, Path(results) / f"{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    torch.multiprocessing.spawn(reduce_in_process, args=(sys.argv[1], sys.argv[2]), nprocs=2)
"""


def test_confusion_matrix_reduction_sums_two_gloo_processes(tmp_path):
    script = tmp_path / "reduce.py"
    script.write_text(REDUCE_IN_TWO_PROCESSES)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "init"), str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 2, 0]])
    for rank in (0, 1):
        assert torch.equal(torch.load(tmp_path / f"{rank}.pt", weights_only=True), expected)


def test_two_gloo_processes_train_together(tiny_cityscapes, tmp_path):
    out = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", str(TRAIN_PY),
               *tiny_args(tiny_cityscapes, out, "--epochs", "2", "--threads", "1")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    meta = read_metadata(out / "best.safetensors")
    assert meta.recipe["world_size"] == 2
    assert len(read_log(out)) == 2
    state = torch.load(out / "last.pt", weights_only=True)
    model, _ = load_weights(out / "best.safetensors")
    assert state["epoch"] == 1 and not any(k.startswith("module.") for k in state["model"])
    assert set(model.state_dict()) == set(state["model"])
    # Each process evaluated one of the two val frames; the recorded metrics count both.
    val = Cityscapes(tiny_cityscapes, "val")
    assert len(val) == 2
    assert meta.metrics["pixels"] == sum(int((val.load(i)[1] < 19).sum()) for i in range(2))


# Export

@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> tuple[Path, Path, list]:
    out = tmp_path_factory.mktemp("export")
    weights, onnx_path = out / "lednet_tiny.safetensors", out / "lednet_tiny.onnx"
    checks = export.main([str(trained_run), "--output", str(weights), "--onnx", str(onnx_path)])
    return weights, onnx_path, checks


def test_exported_weights_load_in_the_segmenter(exported, trained_run, tiny_cityscapes):
    weights, _, _ = exported
    source_model, source_meta = load_weights(trained_run / "best.safetensors")
    model, meta = load_weights(weights)
    assert meta == source_meta and meta.recipe["lr"] == 1e-2
    assert meta.metrics["mean_iou"] == source_meta.metrics["mean_iou"]
    assert state_dicts_equal(model.state_dict(), source_model.state_dict())
    assert graphs_match(graphs_beside(weights), file_sha256(weights))  # what the node's CPU
    # engines run, beside the weights
    segmenter = Segmenter.from_weights(weights, device="cpu", engine="torch")
    assert segmenter.input_size == (64, 32) and segmenter.class_names == list(CITYSCAPES.names)
    image = sorted(tiny_cityscapes.glob("leftImg8bit/val/*/*.png"))[0]
    rgb = cv2.resize(cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB), (100, 50))
    labels = segmenter.segment(rgb)
    assert labels.shape == (50, 100) and labels.max() < 19


def test_export_records_test_split_metrics_as_the_node_segments(trained_run, tiny_cityscapes,
                                                                 tmp_path):
    out = tmp_path / "tested.safetensors"
    export.main([str(trained_run), "--output", str(out), "--test-data-path", str(tiny_cityscapes),
                 "--test-split", "val"])
    meta = read_metadata(out)
    segmenter = Segmenter.from_weights(out, device="cpu", engine="torch")
    dataset = Cityscapes(tiny_cityscapes, "val")
    matrix = ConfusionMatrix(19)
    for index in range(len(dataset)):
        rgb, label = dataset.load(index)
        matrix.update(label, segmenter.segment(rgb))
    assert meta.metrics["test"]["mean_iou"] == pytest.approx(matrix.mean_iou())
    assert meta.metrics["test"]["split"] == "val (2 frames, 64x32)"
    assert meta.reported_mean_iou == meta.metrics["test"]["mean_iou"]
    with pytest.raises(SystemExit, match="missing"):
        export.main([str(trained_run), "--output", str(tmp_path / "x.safetensors"),
                     "--test-data-path", str(tmp_path / "nowhere")])


def test_export_defaults_to_a_file_beside_the_run(trained_run):
    export.main([str(trained_run)])
    assert read_metadata(trained_run / "lednet_cityscapes.safetensors").dataset == "cityscapes"


def test_onnx_agrees_with_pytorch_at_two_sizes(exported):
    _, _, checks = exported
    assert [(c.width, c.height) for c in checks] == [(64, 32), (32, 16)]
    for check in checks:
        assert check.label_disagreement <= export.MAX_LABEL_DISAGREEMENT
        assert check.max_abs_diff < 1e-3


def test_onnx_file_has_dynamic_axes_and_metadata(exported, tiny_cityscapes):
    import onnx
    import onnxruntime as ort

    weights, onnx_path, _ = exported
    graph = onnx.load(str(onnx_path))
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    props = {p.key: p.value for p in graph.metadata_props}
    model, meta = load_weights(weights)
    assert props["lednet_ros"] == meta.to_json()
    # A size and a real frame the export's own check did not use: the same labels as PyTorch.
    image = sorted(tiny_cityscapes.glob("leftImg8bit/val/*/*.png"))[0]
    rgb = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
    x = export.preprocess(rgb, (96, 48), meta.mean, meta.std)
    (logits,) = ort.InferenceSession(str(onnx_path)).run(None, {"image": x.numpy()})
    with torch.inference_mode():
        expected = model.eval()(x)
    assert logits.shape == (1, 19, 48, 96)
    agree = (logits.argmax(1) == expected.argmax(1).numpy()).mean()
    assert agree >= 1 - export.MAX_LABEL_DISAGREEMENT


def test_onnx_check_fails_when_labels_disagree(exported):
    _, onnx_path, _ = exported
    torch.manual_seed(1)
    other = LEDNet(19)  # not the exported model
    meta = read_metadata(exported[0])
    rgb = export.check_image(None, (64, 32))
    with pytest.raises(export.ExportError, match="disagrees with PyTorch"):
        export.compare_onnx(other, meta, onnx_path, rgb, [(64, 32)])


def test_export_refuses_weights_without_recipe_or_miou(random_weights, tmp_path):
    with pytest.raises(SystemExit, match="lacks the training recipe or a finite mean_iou"):
        export.main([str(random_weights), "--output", str(tmp_path / "out.safetensors")])
    assert not (tmp_path / "out.safetensors").exists()


def test_export_of_a_missing_run_names_the_file(tmp_path):
    with pytest.raises(SystemExit, match=f"{tmp_path / 'best.safetensors'}: no such weights file"):
        export.main([str(tmp_path)])


def test_real_cityscapes_mini_trains_one_epoch(cityscapes_root, tmp_path):
    """The real 2048x1024 frames through the whole pipeline (resized small to stay quick)."""
    best = train.main(["--dataset", "cityscapes", "--data-path", str(cityscapes_root),
                       "--resize", "128x64", "--eval-size", "128x64", "--batch-size", "2",
                       "--epochs", "1", "--output-dir", str(tmp_path)])
    assert 0.0 <= best <= 1.0
    meta = read_metadata(tmp_path / "best.safetensors")
    assert meta.input_size == [128, 64] and meta.metrics["split"] == "val"
    weights = meta.recipe["class_weight_values"]
    assert len(weights) == 19 and all(np.isfinite(weights))


@pytest.mark.skipif(cpu.native_bf16(), reason="this CPU computes bf16 natively")
def test_amp_on_this_cpu_without_native_bf16_is_refused_at_once(tmp_path):
    """Refused before any data is read: the data path does not even exist."""
    with pytest.raises(SystemExit) as refused:
        train.main(tiny_args(tmp_path / "no_data", tmp_path, "--amp", "--device", "cpu"))
    assert cpu.missing_bf16_reason() in str(refused.value)
    assert "avx512_bf16 nor amx_bf16" in str(refused.value)


def test_amp_on_a_cpu_without_bf16_flags_is_refused(tmp_path, monkeypatch):
    """The same refusal on any machine, with the CPU's flags replaced by an AVX2-only set."""
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"sse4_2", "avx2", "fma"}))
    with pytest.raises(SystemExit, match=r"--amp on the CPU trains in bf16, which this CPU "
                                         r"\(.*\) has neither of the bf16 features "
                                         r"avx512_bf16 nor amx_bf16"):
        train.main(tiny_args(tmp_path / "no_data", tmp_path, "--amp", "--device", "cpu",
                             "--test-only"))


@pytest.mark.skipif(not cpu.native_bf16(), reason=cpu.missing_bf16_reason() or "native bf16")
def test_bf16_training_steps_on_a_cpu_with_native_bf16():
    """Train under CPU bf16 autocast: bf16 convolutions of channels-last input, fp32 weights."""
    torch.manual_seed(0)
    model = LEDNet(19).to(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = train.poly_lr_scheduler(optimizer, 1e-3, total_iters=2, power=0.9)
    seen = []
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda module, inputs, output: seen.append(
        (output.dtype, inputs[0].is_contiguous(memory_format=torch.channels_last))))
    loader = [(torch.rand(2, 3, 32, 64), torch.randint(0, 19, (2, 32, 64))) for _ in range(2)]
    loss, lr = train.train_one_epoch(
        model, torch.nn.CrossEntropyLoss(ignore_index=255), optimizer, scheduler, loader,
        torch.device("cpu"), iterations=2, scaler=torch.amp.GradScaler("cpu", enabled=False),
        autocast_dtype=torch.bfloat16, memory_format=torch.channels_last, show_progress=False)
    assert seen == [(torch.bfloat16, True)] * 2
    assert np.isfinite(loss) and lr == poly(1e-3, 1, 2)
    after = model.state_dict()
    assert all(v.dtype == torch.float32 for v in after.values() if v.is_floating_point())
    assert not all(torch.equal(after[k], before[k]) for k in after)


@pytest.mark.skipif(not cpu.native_bf16(), reason=cpu.missing_bf16_reason() or "native bf16")
def test_bf16_run_on_a_cpu_with_native_bf16(tiny_cityscapes, tmp_path):
    train.main(tiny_args(tiny_cityscapes, tmp_path, "--amp", "--device", "cpu", "--epochs", "2",
                         "--lr", "1e-2", "--class-weights", "none"))
    model, meta = load_weights(tmp_path / "best.safetensors")
    assert meta.recipe["amp"] is True
    floats = [v for v in model.state_dict().values() if v.is_floating_point()]
    assert all(torch.isfinite(v).all() for v in floats)
    losses = [float(r["loss"]) for r in read_log(tmp_path)]
    assert np.isfinite(losses).all() and losses[1] < losses[0], losses


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision needs a CUDA device")
def test_mixed_precision_run_on_cuda(tiny_cityscapes, tmp_path):
    train.main(tiny_args(tiny_cityscapes, tmp_path, "--amp", "--device", "cuda", "--epochs", "2"))
    model, meta = load_weights(tmp_path / "best.safetensors")
    assert meta.recipe["amp"] is True
    floats = [v for v in model.state_dict().values() if v.is_floating_point()]
    assert all(torch.isfinite(v).all() for v in floats)
