"""Train LEDNet with the paper's recipe (Adam 5e-4, weight decay 1e-4, poly 0.9, batch 5).

Single process:   python training/train.py --dataset cityscapes --data-path /data/cityscapes
Data parallel:    torchrun --nproc_per_node=N training/train.py ...  (NCCL on GPUs, gloo on CPU)
Resume:           the same command with --resume (reads <output-dir>/last.pt)
Evaluate:         python training/train.py ... --test-only [--weights best.safetensors]

Outputs in --output-dir: last.pt (training state, for --resume), best.safetensors (the best on
--val-split: the weights the node loads, with their metadata), final.safetensors (the last epoch's,
for a fixed schedule on train+val), with --save-evaluated epoch_NNN.safetensors (each evaluated
epoch's), log.csv and curves.png (loss, lr, mIoU per epoch); the log starts with every setting.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import math
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lednet_ros.arguments import parse_size  # noqa: E402
from lednet_ros.core.data.classes import IGNORE_INDEX  # noqa: E402
from lednet_ros.core.data.datasets import DATASETS, DatasetError, open_split, split_names  # noqa: E402
from lednet_ros.core.evaluation.metrics import ConfusionMatrix  # noqa: E402
from lednet_ros.core.inference import cpu  # noqa: E402
from lednet_ros.core.inference.checkpoint import (  # noqa: E402
    CheckpointError, WeightsMetadata, load_weights, save_weights,
)
from lednet_ros.core.inference.model import LEDNet  # noqa: E402
from training.losses import SegmentationLoss  # noqa: E402
from training.presets import eval_preset, train_preset  # noqa: E402

# ENet-style weights used by the official code for Cityscapes stage 2 (LEDNET_SPEC).
PAPER_CITYSCAPES_WEIGHTS = (
    2.8149, 6.9850, 3.7890, 9.9428, 9.7702, 9.5111, 10.3114, 10.0265, 4.6323, 9.5608, 7.8698,
    9.5169, 10.3737, 6.6616, 10.2605, 10.2879, 10.2898, 10.4054, 10.1381,
)

# What torch.load(weights_only=True) and load_state_dict raise for a file that is not a training
# state of ours: not a zip/pickle, truncated, objects the weights-only unpickler refuses, other
# keys or shapes.
UNREADABLE_STATE = (OSError, EOFError, KeyError, RuntimeError, TypeError, AttributeError,
                    pickle.UnpicklingError, ValueError)

# The lr_scheduler entries that fix the lr of every later iteration (the rest is bookkeeping).
SCHEDULE_KEYS = ("base_lrs", "last_epoch", "_last_lr")


def get_args(argv=None) -> argparse.Namespace:
    """Parse the command line.

    --resize defaults to the paper's 1024x512 on Cityscapes, --eval-size to --resize (with
    --test-only to the weights' input size).
    """
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", choices=sorted(DATASETS), default="cityscapes")
    p.add_argument("--data-path", required=True, type=Path)
    p.add_argument("--train-split", default="train",
                   help="a split, or splits joined by '+' (train+val)")
    p.add_argument("--val-split", default="val")
    p.add_argument("--output-dir", type=Path, default=Path("runs/lednet"))
    p.add_argument("--decoder", choices=["apn", "apn128"], default="apn")
    p.add_argument("--stage", choices=["full", "encoder"], default="full",
                   help="'encoder': train the encoder alone with a 1x1 head at 1/8 resolution "
                        "(the official code's first stage); 'full': the whole network")
    p.add_argument("--encoder-weights", type=Path,
                   help="start the full stage from an encoder stage's last.pt")
    p.add_argument("--init-weights", type=Path,
                   help="start from the weights of a .safetensors checkpoint (fine-tuning; its "
                        "recipe is recorded in the new checkpoint's)")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=5, help="per process")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--poly-power", type=float, default=0.9)
    p.add_argument("--class-weights", choices=["paper", "enet", "none"], default="enet",
                   help="'paper': the official Cityscapes weights; 'enet': 1/ln(1.02 + p) from "
                        "the training labels")
    p.add_argument("--lovasz-weight", type=float, default=0.0,
                   help="add this times the Lovász-softmax loss (a surrogate of 1 - IoU) to the "
                        "cross-entropy; 0: cross-entropy alone, as the paper")
    p.add_argument("--resize", type=parse_size, default=None,
                   help="resize training images first (the paper: 1024x512)")
    p.add_argument("--scale-jitter", type=float, nargs=2, metavar=("LOW", "HIGH"))
    p.add_argument("--crop", type=parse_size, default=None)
    p.add_argument("--translate", type=int, default=2, help="random translation in pixels")
    p.add_argument("--color-jitter", type=float, default=0.0,
                   help="brightness, contrast and saturation factors drawn from [1-s, 1+s]")
    # Camera robustness (issue 29); 0 leaves the pipeline as without the option.
    p.add_argument("--hue", type=float, default=0.0, help="largest hue rotation in degrees")
    p.add_argument("--gamma", type=float, default=0.0, help="gamma drawn from [1-s, 1+s]")
    p.add_argument("--white-balance", type=float, default=0.0,
                   help="per-channel (R, G, B) gains drawn from [1-s, 1+s]")
    p.add_argument("--blur", type=float, default=0.0,
                   help="Gaussian blur, sigma drawn from [0, BLUR] pixels (half the samples)")
    p.add_argument("--noise", type=float, default=0.0,
                   help="Gaussian noise, std drawn from [0, NOISE] grey levels of 255 (half the "
                        "samples)")
    p.add_argument("--jpeg-quality", type=int, default=0,
                   help="JPEG re-encoding at a quality drawn from [Q, 95] (half the samples)")
    p.add_argument("--aspect-jitter", type=float, default=0.0,
                   help="width/height ratio times or divided by up to 1+s, area kept (half the "
                        "samples)")
    p.add_argument("--pitch-warp", type=float, default=0.0,
                   help="camera-pitch warp moving the horizon by up to this fraction of the "
                        "height (half the samples)")
    p.add_argument("--eval-size", type=parse_size, default=None,
                   help="evaluate images and labels (nearest) at this size (default: --resize, "
                        "as the paper evaluates Cityscapes at 1024x512; with --test-only the "
                        "weights' input size; without either the dataset's own)")
    p.add_argument("--mean", type=float, nargs=3, default=[0.0, 0.0, 0.0])
    p.add_argument("--std", type=float, nargs=3, default=[1.0, 1.0, 1.0])
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--max-iters-per-epoch", type=int, default=0, help="0: the whole dataset")
    p.add_argument("--save-evaluated", action="store_true",
                   help="also keep each evaluated epoch's weights as epoch_NNN.safetensors (to "
                        "choose an epoch on data outside --val-split)")
    p.add_argument("--stop-after-epochs", type=int, default=0,
                   help="end this run after N epochs, as if interrupted (for time-limited jobs; "
                        "continue with --resume; the lr schedule still spans --epochs)")
    p.add_argument("--workers", type=int, default=0, help="data loading processes")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", action="store_true",
                   help="mixed precision: fp16 on CUDA; bf16 (channels-last) on a CPU with "
                        "native bf16 (AVX-512 BF16 or AMX), refused on other CPUs")
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true", help="continue from <output-dir>/last.pt")
    p.add_argument("--test-only", action="store_true", help="evaluate the weights and exit")
    p.add_argument("--weights", type=Path,
                   help="weights to evaluate with --test-only "
                        "(default: <output-dir>/best.safetensors)")
    args = p.parse_args(argv)
    upper_bounds = {"hue": math.inf, "gamma": 1, "white_balance": 1, "blur": math.inf,
                    "noise": math.inf, "aspect_jitter": math.inf, "pitch_warp": 1}
    for name, upper in upper_bounds.items():
        value = getattr(args, name)
        if not 0 <= value < upper:
            p.error(f"--{name.replace('_', '-')} {value}: expected a value in [0, {upper})")
    if not (args.jpeg_quality == 0 or 1 <= args.jpeg_quality <= 95):
        p.error(f"--jpeg-quality {args.jpeg_quality}: expected 0 (off) or 1 to 95")
    if args.resize is None and args.dataset == "cityscapes":
        args.resize = (1024, 512)
    if args.eval_size is None and not args.test_only:
        args.eval_size = args.resize
    return args


class EncoderClassifier(nn.Module):
    """The encoder with a 1x1 classifier at 1/8 resolution: the first training stage only."""

    def __init__(self, model: LEDNet):
        super().__init__()
        self.encoder = model.encoder
        self.classifier = nn.Conv2d(model.encoder.out_channels, model.num_classes, 1)

    def forward(self, x):
        return self.classifier(self.encoder(x))


def get_transform(args: argparse.Namespace, class_set, train: bool):
    """Build the training or evaluation preset with this command line's settings."""
    if train:
        return train_preset(resize=args.resize, scale_jitter=args.scale_jitter, crop=args.crop,
                            translate=args.translate, color_jitter=args.color_jitter,
                            hue=args.hue, gamma=args.gamma, white_balance=args.white_balance,
                            blur=args.blur, noise=args.noise, jpeg_quality=args.jpeg_quality,
                            aspect_jitter=args.aspect_jitter, pitch_warp=args.pitch_warp,
                            mean=args.mean, std=args.std, void_id=class_set.ignore_index)
    return eval_preset(size=args.eval_size, mean=args.mean, std=args.std,
                       void_id=class_set.ignore_index)


def get_dataset(dataset_cls, root: Path, split: str, transform):
    """Open a split; missing or malformed data stops the run with the path and what was wrong."""
    try:
        return open_split(dataset_cls, root, split, transform)
    except DatasetError as exc:
        raise SystemExit(f"dataset error: {exc}") from None


def enet_class_weights(dataset, num_classes: int, c: float = 1.02) -> torch.Tensor:
    """Compute ENet's class weights 1 / ln(c + p_class), p the pixel frequency in the labels."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for index in range(len(dataset)):
        label = dataset.read_target(dataset.pairs[index][1])
        counts += np.bincount(label.ravel(), minlength=256)[:num_classes]
    freq = counts / max(1, counts.sum())
    return torch.tensor(1.0 / np.log(c + freq), dtype=torch.float32)


def get_class_weights(choice: str, dataset_name: str, train_set,
                      num_classes: int) -> torch.Tensor | None:
    """Return the loss's class weights for --class-weights ``choice`` (None: unweighted)."""
    if choice == "paper":
        if dataset_name != "cityscapes":
            raise SystemExit("--class-weights paper is for Cityscapes; use enet or none")
        return torch.tensor(PAPER_CITYSCAPES_WEIGHTS)
    if choice == "enet":
        try:
            return enet_class_weights(train_set, num_classes)
        except DatasetError as exc:
            raise SystemExit(f"dataset error: {exc}") from None
    return None


@contextlib.contextmanager
def process_group():
    """Yield (rank, world_size): under torchrun a process group for its lifetime, else (0, 1)."""
    if "RANK" not in os.environ:
        yield 0, 1
        return
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        dist.destroy_process_group()


def pick_device(request: str, rank: int) -> torch.device:
    """Pick --device ('auto': this process's GPU under torchrun, or the CPU without CUDA)."""
    if request == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    else:
        device = torch.device(request)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and the default CUDA stream use this process's GPU
    return device


def amp_dtype(device: torch.device) -> torch.dtype:
    """Return the autocast dtype of --amp: fp16 on CUDA, bf16 on a CPU that has it natively.

    Raises:
        SystemExit: on a CPU without native bf16 (emulated bf16 is slower than fp32), naming the
            missing CPU feature, and on other devices.
    """
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu":
        if not cpu.native_bf16():
            raise SystemExit(f"--amp on the CPU trains in bf16, which {cpu.missing_bf16_reason()}"
                             "; without it bf16 is emulated and slower than fp32: train without "
                             "--amp")
        return torch.bfloat16
    raise SystemExit(f"--amp needs a CUDA device or a CPU with native bf16, not {device}")


def epoch_order(n: int, epoch: int, seed: int, rank: int, world: int) -> list[int]:
    """Return this process's shuffled sample indices for an epoch (identical after a resume)."""
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    per_rank = math.ceil(n / world)
    order += order[: per_rank * world - n]
    return order[rank::world]


def batch_items(order, batch_size, seed, epoch) -> list[list[tuple[int, int]]]:
    """Split ``order`` into batches of (sample index, augmentation seed), dropping a short one."""
    return [[(i, seed * 1000003 + epoch * 100003 + i) for i in order[start:start + batch_size]]
            for start in range(0, len(order) - batch_size + 1, batch_size)]


def batches(dataset, order, batch_size, seed, epoch, workers=0):
    """Load (images, labels) batches in ``workers`` processes; the same tensors for any count.

    The loader gets its own generator so it never draws from the global RNG (dropout's).
    """
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batch_items(order, batch_size, seed, epoch), num_workers=workers,
        generator=torch.Generator())


def poly_lr_scheduler(optimizer: torch.optim.Optimizer, base_lr: float, total_iters: int,
                      power: float, start_iteration: int = 0) -> LambdaLR:
    """Build the poly schedule, stepped once per iteration.

    At iteration i the lr is ``base_lr * (1 - min(i, total_iters - 1) / total_iters) ** power``.
    Built at ``start_iteration`` (a resumed run's first iteration) whatever lr the optimizer holds.
    A LambdaLR rather than PolynomialLR: PolynomialLR's chained updates drift from this formula in
    the last bits and end at 0 instead of the clamped last value.
    """
    def poly(iteration: int) -> float:
        return (1 - min(iteration, total_iters - 1) / total_iters) ** power

    for group in optimizer.param_groups:
        group["initial_lr"] = base_lr
    return LambdaLR(optimizer, poly, last_epoch=start_iteration - 1)


def restore_lr_scheduler(scheduler: LambdaLR, recorded: dict | None) -> str:
    """Load last.pt's scheduler state where it gives the lr values of ``scheduler``.

    ``scheduler`` is built at the resumed iteration from the command line. A last.pt written
    before the schedule was checkpointed has no state: the schedule stays positioned from the
    epoch count. A state recorded with another --lr, --epochs, --poly-power or iterations per
    epoch gives way to this command's schedule, as the lr always followed the command line.

    Returns:
        What was done, for the log.
    """
    if recorded is None:
        return (f"lr schedule positioned from the epoch count (iteration {scheduler.last_epoch}): "
                "last.pt has no lr_scheduler state")
    expected = scheduler.state_dict()
    if any(recorded.get(key) != expected[key] for key in SCHEDULE_KEYS):
        return (f"lr schedule positioned from the epoch count (iteration {scheduler.last_epoch}, "
                f"lr {expected['_last_lr'][0]:.4e}): last.pt's (iteration "
                f"{recorded.get('last_epoch')}, lr {recorded.get('_last_lr')}) is of other "
                "settings")
    scheduler.load_state_dict(recorded)
    return f"lr schedule restored at iteration {scheduler.last_epoch}"


def downsample_labels(labels: torch.Tensor, size) -> torch.Tensor:
    """Downsample N x H x W labels with nearest (the encoder stage's targets)."""
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def train_one_epoch(model, criterion, optimizer, scheduler, loader, device, *, iterations: int,
                    scaler: torch.amp.GradScaler, autocast_dtype: torch.dtype | None = None,
                    memory_format: torch.memory_format = torch.contiguous_format,
                    stage: str = "full", header: str = "",
                    show_progress: bool = True) -> tuple[float, float]:
    """Train on the first ``iterations`` batches of ``loader``, stepping the scheduler per batch.

    Args:
        autocast_dtype: the mixed-precision dtype (None: fp32).
        memory_format: of the input batches (the model's own, channels-last for CPU bf16).
        stage: 'encoder' compares the 1/8-resolution logits with downsampled labels.

    Returns:
        (mean loss, lr of the last iteration).
    """
    model.train()
    total, count, lr = 0.0, 0, float("nan")
    progress = _progress(iterations, header, show_progress)
    for x, y in itertools.islice(loader, iterations):
        lr = optimizer.param_groups[0]["lr"]
        x = x.to(device, non_blocking=True, memory_format=memory_format)
        y = y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(x)
            if stage == "encoder":
                y = downsample_labels(y, logits.shape[-2:])
            loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total, count = total + loss.item(), count + 1
        progress.update(1)
        progress.set_postfix(loss=f"{total / count:.4f}", lr=f"{lr:.2e}")
    progress.close()
    return total / max(count, 1), lr


@torch.inference_mode()
def evaluate(model, dataset, device, num_classes: int, rank: int = 0, world: int = 1,
             stage: str = "full") -> ConfusionMatrix:
    """Compute the confusion matrix over a dataset, summed over the processes.

    Each process takes every ``world``-th image, from its ``rank``.
    """
    model.eval()
    cm = ConfusionMatrix(num_classes)
    for index in range(rank, len(dataset), world):
        x, y = dataset[index]
        logits = model(x.unsqueeze(0).to(device))
        if stage == "encoder":
            y = downsample_labels(y.unsqueeze(0), logits.shape[-2:])[0]
        cm.update(y, logits.argmax(1)[0].cpu())
    cm.reduce_from_all_processes()
    return cm


def save_state(path: Path, state: dict) -> None:
    """Save atomically: a killed run never leaves a half-written last.pt."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_training_state(path: Path, model, optimizer, scaler) -> tuple[int, float, dict | None]:
    """Restore model, optimizer and scaler from a last.pt, read weights-only.

    Returns:
        (the epoch to start at, the best mIoU so far, the recorded lr_scheduler state or None
        for a last.pt written before it was checkpointed).
    """
    if not path.is_file():
        raise SystemExit(f"--resume: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"], strict=True)
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        recorded_schedule = state.get("lr_scheduler")
        if recorded_schedule is not None and not isinstance(recorded_schedule, dict):
            raise TypeError(f"lr_scheduler is a {type(recorded_schedule).__name__}")
        return state["epoch"] + 1, state["best_miou"], recorded_schedule
    except UNREADABLE_STATE as exc:
        raise SystemExit(f"--resume: {path} is not a training state of this run "
                         f"({type(exc).__name__}: {exc})") from None


def load_encoder(model: LEDNet, path: Path) -> None:
    """Initialise ``model``'s encoder from an encoder stage's last.pt."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        encoder_state = {k[len("encoder."):]: v for k, v in state["model"].items()
                         if k.startswith("encoder.")}
        model.encoder.load_state_dict(encoder_state, strict=True)
    except UNREADABLE_STATE as exc:
        raise SystemExit(f"--encoder-weights {path}: not an encoder stage's last.pt of a "
                         f"{model.num_classes}-class {model.decoder_variant} LEDNet: "
                         f"{exc}") from None


def init_from_weights(model: LEDNet, path: Path) -> dict:
    """Load a same-architecture .safetensors checkpoint into ``model``; return its recipe."""
    try:
        source, meta = load_weights(path, num_classes=model.num_classes,
                                    decoder=model.decoder_variant)
    except CheckpointError as exc:
        raise SystemExit(f"--init-weights: {exc}") from None
    model.load_state_dict(source.state_dict(), strict=True)
    return {"path": str(path), "recipe": meta.recipe, "metrics": meta.metrics}


LOG_COLUMNS = ["epoch", "loss", "lr", "val_miou", "val_pixel_acc", "seconds"]


def append_log(csv_path: Path, row: list) -> None:
    """Append one epoch's row (LOG_COLUMNS) to log.csv."""
    with open(csv_path, "a", newline="") as f:
        csv.writer(f).writerow(row)


def plot_curves(csv_path: Path, png_path: Path) -> None:
    """Plot loss, lr and validation mIoU per epoch from log.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    epochs = [int(r["epoch"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, key in zip(axes, ("loss", "lr", "val_miou")):
        points = [(e, float(r[key])) for e, r in zip(epochs, rows) if r[key] not in ("", "nan")]
        if points:
            ax.plot(*zip(*points), marker=".")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)


def print_report(cm: ConfusionMatrix, names) -> None:
    """Print mIoU, pixel accuracy and per-class IoU, in percent."""
    print(f"mIoU {100 * cm.mean_iou():.2f}%  pixel accuracy {100 * cm.pixel_accuracy():.2f}%")
    for name, iou in zip(names, cm.iou()):
        print(f"  {name:<16} {100 * iou:6.2f}")


def run_test_only(args: argparse.Namespace, device: torch.device, rank: int, world: int) -> float:
    """Evaluate the weights on --val-split with their own normalisation (--test-only).

    Returns the mIoU.
    """
    dataset_cls = DATASETS[args.dataset]
    class_set = dataset_cls.class_set
    weights_path = args.weights or args.output_dir / "best.safetensors"
    try:
        model, meta = load_weights(weights_path, num_classes=class_set.num_classes)
    except CheckpointError as exc:
        raise SystemExit(f"--test-only: {exc}") from None
    eval_size = args.eval_size or tuple(meta.input_size)
    transform = eval_preset(size=eval_size, mean=meta.mean, std=meta.std,
                            void_id=class_set.ignore_index)
    val_set = get_dataset(dataset_cls, args.data_path, args.val_split, transform)
    cm = evaluate(model.to(device), val_set, device, class_set.num_classes, rank, world)
    if rank == 0:
        print(f"{weights_path} on {args.dataset} {args.val_split} ({len(val_set)} images "
              f"at {eval_size[0]}x{eval_size[1]})")
        print_report(cm, class_set.names)
    return cm.mean_iou()


def main(argv=None) -> float:
    """Train (or with --test-only evaluate); return the best validation mIoU."""
    args = get_args(argv)
    with process_group() as (rank, world):
        device = pick_device(args.device, rank)
        if args.threads:
            torch.set_num_threads(args.threads)
        autocast_dtype = amp_dtype(device) if args.amp else None
        if args.test_only:
            return run_test_only(args, device, rank, world)
        # Channels-last with CPU bf16 (Intel AMX: 84 ms/image against 98 in fp32).
        channels_last = autocast_dtype == torch.bfloat16 and device.type == "cpu"
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        is_main = rank == 0
        dataset_cls = DATASETS[args.dataset]
        class_set = dataset_cls.class_set
        num_classes = class_set.num_classes

        train_set = get_dataset(dataset_cls, args.data_path, args.train_split,
                                get_transform(args, class_set, train=True))
        val_set = get_dataset(dataset_cls, args.data_path, args.val_split,
                              get_transform(args, class_set, train=False))
        if math.ceil(len(train_set) / world) < args.batch_size:
            raise SystemExit(f"{args.data_path} has {len(train_set)} {args.train_split} images: "
                             f"fewer than one batch of {args.batch_size} for each of {world} "
                             "processes")
        val_held_out = not set(split_names(args.val_split)) & set(split_names(args.train_split))
        if is_main and not val_held_out:
            print(f"--val-split {args.val_split} is part of --train-split {args.train_split}: "
                  "its scores are on training frames (use final.safetensors, the schedule's "
                  "end, not best.safetensors)", flush=True)

        torch.manual_seed(args.seed)
        full_model = LEDNet(num_classes, decoder=args.decoder)
        model = EncoderClassifier(full_model) if args.stage == "encoder" else full_model
        if args.encoder_weights:
            load_encoder(full_model, args.encoder_weights)
        init_recipe = init_from_weights(full_model, args.init_weights) if args.init_weights \
            else None
        model.to(device, memory_format=memory_format)

        class_weights = get_class_weights(args.class_weights, args.dataset, train_set,
                                          num_classes)
        criterion = SegmentationLoss(
            IGNORE_INDEX, class_weights.to(device) if class_weights is not None else None,
            lovasz_weight=args.lovasz_weight)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999),
                                     weight_decay=args.weight_decay)
        scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)
        train_model = model
        if world > 1:
            train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)

        iters_per_epoch = len(train_set) // (args.batch_size * world) or 1
        if args.max_iters_per_epoch:
            iters_per_epoch = min(iters_per_epoch, args.max_iters_per_epoch)
        args.output_dir.mkdir(parents=True, exist_ok=True)
        last_path, csv_path = args.output_dir / "last.pt", args.output_dir / "log.csv"
        start_epoch, best_miou, recorded_schedule = 0, -1.0, None
        if args.resume:
            start_epoch, best_miou, recorded_schedule = load_training_state(
                last_path, model, optimizer, scaler)
        elif is_main:
            with open(csv_path, "w", newline="") as f:
                csv.writer(f).writerow(LOG_COLUMNS)
        lr_scheduler = poly_lr_scheduler(optimizer, args.lr, args.epochs * iters_per_epoch,
                                         args.poly_power, start_epoch * iters_per_epoch)
        if args.resume:
            restored = restore_lr_scheduler(lr_scheduler, recorded_schedule)
            if is_main:
                print(f"resumed from {last_path} at epoch {start_epoch}; {restored}", flush=True)

        recipe = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        recipe["world_size"] = world
        recipe["class_weight_values"] = class_weights.tolist() if class_weights is not None \
            else None
        if init_recipe is not None:
            recipe["init_weights_recipe"] = init_recipe
        if is_main:  # every setting, defaults included, at the head of the run's log
            print("settings: " + json.dumps({k: recipe[k] for k in vars(args)}), flush=True)
        stop_epoch = args.epochs
        if args.stop_after_epochs:
            stop_epoch = min(args.epochs, start_epoch + args.stop_after_epochs)
        for epoch in range(start_epoch, stop_epoch):
            started = time.time()
            torch.manual_seed(args.seed * 100003 + epoch * 1009 + rank)  # dropout, reproducible
            order = epoch_order(len(train_set), epoch, args.seed, rank, world)
            loader = batches(train_set, order, args.batch_size, args.seed, epoch, args.workers)
            loss, lr = train_one_epoch(
                train_model, criterion, optimizer, lr_scheduler, loader, device,
                iterations=iters_per_epoch, scaler=scaler, autocast_dtype=autocast_dtype,
                memory_format=memory_format, stage=args.stage,
                header=f"epoch {epoch + 1}/{args.epochs}", show_progress=is_main)
            miou = pixel_acc = float("nan")
            evaluated = (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs
            if evaluated:
                cm = evaluate(model, val_set, device, num_classes, rank, world, args.stage)
                miou, pixel_acc = cm.mean_iou(), cm.pixel_accuracy()
            if is_main:
                seconds = time.time() - started
                print(f"epoch {epoch + 1}: loss {loss:.4f} lr {lr:.3e} val mIoU {miou:.4f} "
                      f"pixel acc {pixel_acc:.4f} ({seconds:.0f} s)", flush=True)
                append_log(csv_path, [epoch + 1, loss, lr, miou, pixel_acc, round(seconds, 1)])
                plot_curves(csv_path, args.output_dir / "curves.png")
                # The encoder stage is not a model to deploy. final.safetensors: the end of
                # the fixed schedule (the weights to use when val is part of --train-split).
                improved = evaluated and miou > best_miou
                best_miou = miou if improved else best_miou
                deployable = [name for name, wanted in (
                    ("best.safetensors", improved),
                    ("final.safetensors", epoch + 1 == args.epochs),
                    (f"epoch_{epoch + 1:03d}.safetensors", evaluated and args.save_evaluated))
                    if wanted]
                if args.stage == "full" and deployable:
                    metrics = {"mean_iou": miou, "pixel_accuracy": pixel_acc,
                               "epoch": epoch + 1, "split": args.val_split,
                               "held_out": val_held_out,
                               **cm.summary(class_set.names)}
                    input_size = args.resize or args.eval_size or _native_size(val_set)
                    meta = WeightsMetadata.from_class_set(
                        class_set, decoder=args.decoder, mean=list(args.mean), std=list(args.std),
                        recipe=recipe, metrics=metrics, input_size=list(input_size))
                    for name in deployable:
                        save_weights(args.output_dir / name, full_model, meta)
                save_state(last_path, {"model": model.state_dict(),
                                       "optimizer": optimizer.state_dict(),
                                       "lr_scheduler": lr_scheduler.state_dict(),
                                       "scaler": scaler.state_dict(), "epoch": epoch,
                                       "best_miou": best_miou, "args": recipe})
            if world > 1:
                dist.barrier()
        return best_miou


def _native_size(dataset) -> tuple[int, int]:
    image, _ = dataset.load(0)
    return image.shape[1], image.shape[0]


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled or None, leave=False, file=sys.stderr)


if __name__ == "__main__":
    main()
