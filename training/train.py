"""Train LEDNet with the paper's recipe (Adam 5e-4, weight decay 1e-4, poly 0.9, batch 5).

Single process:   python training/train.py --dataset cityscapes --data-path /data/cityscapes
Data parallel:    torchrun --nproc_per_node=N training/train.py ...  (NCCL on GPUs, gloo on CPU)
Resume:           the same command with --resume (reads <output-dir>/last.pt)
Evaluate:         python training/train.py ... --test-only [--weights best.safetensors]

Outputs in --output-dir: last.pt (training state, for --resume), best.safetensors (the weights the
node loads, with their metadata), log.csv and curves.png (loss, lr, mIoU per epoch).
"""

from __future__ import annotations

import argparse
import csv
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lednet_ros.core.checkpoint import (  # noqa: E402
    CheckpointError, WeightsMetadata, load_weights, save_weights)
from lednet_ros.core.classes import IGNORE_INDEX  # noqa: E402
from lednet_ros.core.metrics import ConfusionMatrix  # noqa: E402
from lednet_ros.core.model import LEDNet  # noqa: E402
from lednet_ros.core.datasets import DATASETS, DatasetError  # noqa: E402
from training.transforms import eval_transform, train_transform  # noqa: E402

# ENet-style weights used by the official code for Cityscapes stage 2 (LEDNET_SPEC).
PAPER_CITYSCAPES_WEIGHTS = (
    2.8149, 6.9850, 3.7890, 9.9428, 9.7702, 9.5111, 10.3114, 10.0265, 4.6323, 9.5608, 7.8698,
    9.5169, 10.3737, 6.6616, 10.2605, 10.2879, 10.2898, 10.4054, 10.1381,
)


def size_arg(text: str) -> tuple[int, int]:
    """'1024x512' -> (1024, 512): width x height."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WIDTHxHEIGHT") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return w, h


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", choices=sorted(DATASETS), default="cityscapes")
    p.add_argument("--data-path", required=True, type=Path)
    p.add_argument("--train-split", default="train")
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
    p.add_argument("--resize", type=size_arg, default=None,
                   help="resize training images first (the paper: 1024x512)")
    p.add_argument("--scale-jitter", type=float, nargs=2, metavar=("LOW", "HIGH"))
    p.add_argument("--crop", type=size_arg, default=None)
    p.add_argument("--translate", type=int, default=2, help="random translation in pixels")
    p.add_argument("--color-jitter", type=float, default=0.0,
                   help="brightness, contrast and saturation factors drawn from [1-s, 1+s]")
    p.add_argument("--eval-size", type=size_arg, default=None,
                   help="evaluate images and labels (nearest) at this size (default: --resize, "
                        "as the paper evaluates Cityscapes at 1024x512; with --test-only the "
                        "weights' input size; without either the dataset's own)")
    p.add_argument("--mean", type=float, nargs=3, default=[0.0, 0.0, 0.0])
    p.add_argument("--std", type=float, nargs=3, default=[1.0, 1.0, 1.0])
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--max-iters-per-epoch", type=int, default=0, help="0: the whole dataset")
    p.add_argument("--stop-after-epochs", type=int, default=0,
                   help="end this run after N epochs, as if interrupted (for time-limited jobs; "
                        "continue with --resume; the lr schedule still spans --epochs)")
    p.add_argument("--workers", type=int, default=0, help="data loading processes")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true", help="continue from <output-dir>/last.pt")
    p.add_argument("--test-only", action="store_true", help="evaluate the weights and exit")
    p.add_argument("--weights", type=Path,
                   help="weights to evaluate with --test-only "
                        "(default: <output-dir>/best.safetensors)")
    args = p.parse_args(argv)
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


def enet_class_weights(dataset, num_classes: int, c: float = 1.02) -> torch.Tensor:
    """ENet's class weighting 1 / ln(c + p_class) with p the pixel frequency in the labels."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for index in range(len(dataset)):
        label = dataset.read_target(dataset.pairs[index][1])
        counts += np.bincount(label.ravel(), minlength=256)[:num_classes]
    freq = counts / max(1, counts.sum())
    return torch.tensor(1.0 / np.log(c + freq), dtype=torch.float32)


def init_distributed():
    """Returns (rank, world_size); initialises the process group under torchrun."""
    if "RANK" not in os.environ:
        return 0, 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def pick_device(request: str, rank: int) -> torch.device:
    if request == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    else:
        device = torch.device(request)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and the default CUDA stream use this process's GPU
    return device


def epoch_order(n: int, epoch: int, seed: int, rank: int, world: int) -> list[int]:
    """This process's shuffled sample indices for an epoch (identical after a resume)."""
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    per_rank = math.ceil(n / world)
    order += order[: per_rank * world - n]
    return order[rank::world]


def batch_items(order, batch_size, seed, epoch) -> list[list[tuple[int, int]]]:
    """Batches of (sample index, augmentation seed); an incomplete last batch is dropped."""
    return [[(i, seed * 1000003 + epoch * 100003 + i) for i in order[start:start + batch_size]]
            for start in range(0, len(order) - batch_size + 1, batch_size)]


def batches(dataset, order, batch_size, seed, epoch, workers=0):
    """(images, labels) batches, loaded by ``workers`` processes; the same tensors for any count.

    The loader gets its own generator so it never draws from the global RNG (dropout's)."""
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batch_items(order, batch_size, seed, epoch), num_workers=workers,
        generator=torch.Generator())


def poly_lr(base_lr: float, iteration: int, max_iter: int, power: float) -> float:
    return base_lr * (1 - min(iteration, max_iter - 1) / max_iter) ** power


@torch.inference_mode()
def evaluate(model, dataset, device, num_classes, rank=0, world=1,
             stage="full") -> ConfusionMatrix:
    """Confusion matrix over a dataset (split across processes, then summed)."""
    model.eval()
    cm = ConfusionMatrix(num_classes)
    for index in range(rank, len(dataset), world):
        x, y = dataset[index]
        logits = model(x.unsqueeze(0).to(device))
        if stage == "encoder":
            y = downsample_labels(y.unsqueeze(0), logits.shape[-2:])[0]
        cm.update(y, logits.argmax(1)[0].cpu())
    if world > 1:
        matrix = cm.matrix.to(device)
        dist.all_reduce(matrix)
        cm.matrix = matrix.cpu()
    return cm


def downsample_labels(labels: torch.Tensor, size) -> torch.Tensor:
    """Nearest downsampling of N x H x W labels (the encoder stage's targets)."""
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def save_state(path: Path, state: dict) -> None:
    """Atomic torch.save: a killed run never leaves a half-written last.pt."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def plot_curves(csv_path: Path, png_path: Path) -> None:
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


def main(argv=None) -> float:
    args = get_args(argv)
    rank, world = init_distributed()
    try:
        return run(args, rank, world)
    finally:
        if world > 1:
            dist.destroy_process_group()


def run(args, rank: int, world: int) -> float:
    """Train (or with --test-only evaluate); returns the best validation mIoU."""
    device = pick_device(args.device, rank)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.amp and device.type != "cuda":
        raise SystemExit("--amp needs a CUDA device")
    is_main = rank == 0
    dataset_cls = DATASETS[args.dataset]
    class_set = dataset_cls.class_set
    n_classes = class_set.num_classes

    if args.test_only:
        weights_path = args.weights or args.output_dir / "best.safetensors"
        try:
            loaded, meta = load_weights(weights_path, num_classes=n_classes)
        except CheckpointError as exc:
            raise SystemExit(f"--test-only: {exc}") from None
        args.mean, args.std = meta.mean, meta.std  # the weights' own normalisation
        args.eval_size = args.eval_size or tuple(meta.input_size)
        val_set = _dataset(dataset_cls, args.data_path, args.val_split,
                           eval_transform(args, class_set))
        cm = evaluate(loaded.to(device), val_set, device, n_classes, rank, world)
        if is_main:
            print(f"{weights_path} on {args.dataset} {args.val_split} ({len(val_set)} images "
                  f"at {args.eval_size[0]}x{args.eval_size[1]})")
            print_report(cm, class_set.names)
        return cm.mean_iou()

    train_set = _dataset(dataset_cls, args.data_path, args.train_split,
                         train_transform(args, class_set))
    val_set = _dataset(dataset_cls, args.data_path, args.val_split,
                       eval_transform(args, class_set))
    if math.ceil(len(train_set) / world) < args.batch_size:
        raise SystemExit(f"{args.data_path} has {len(train_set)} {args.train_split} images: "
                         f"fewer than one batch of {args.batch_size} for each of {world} "
                         "processes")

    torch.manual_seed(args.seed)
    full_model = LEDNet(n_classes, decoder=args.decoder)
    model = EncoderClassifier(full_model) if args.stage == "encoder" else full_model
    if args.encoder_weights:
        load_encoder(full_model, args.encoder_weights)
    init_recipe = init_from_weights(full_model, args.init_weights) if args.init_weights else None
    model.to(device)

    if args.class_weights == "paper":
        if args.dataset != "cityscapes":
            raise SystemExit("--class-weights paper is for Cityscapes; use enet or none")
        weights = torch.tensor(PAPER_CITYSCAPES_WEIGHTS)
    elif args.class_weights == "enet":
        try:
            weights = enet_class_weights(train_set, n_classes)
        except DatasetError as exc:
            raise SystemExit(f"dataset error: {exc}") from None
    else:
        weights = None
    criterion = nn.CrossEntropyLoss(weight=weights.to(device) if weights is not None else None,
                                    ignore_index=IGNORE_INDEX)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999),
                                 weight_decay=args.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp)
    train_model = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    per_epoch = len(train_set) // (args.batch_size * world) or 1
    if args.max_iters_per_epoch:
        per_epoch = min(per_epoch, args.max_iters_per_epoch)
    max_iter = args.epochs * per_epoch
    args.output_dir.mkdir(parents=True, exist_ok=True)
    last_path, csv_path = args.output_dir / "last.pt", args.output_dir / "log.csv"
    start_epoch, best_miou = 0, -1.0
    if args.resume:
        if not last_path.is_file():
            raise SystemExit(f"--resume: {last_path} does not exist")
        try:
            state = torch.load(last_path, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"], strict=True)
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            start_epoch, best_miou = state["epoch"] + 1, state["best_miou"]
        except (*UNREADABLE_STATE, ValueError) as exc:
            raise SystemExit(f"--resume: {last_path} is not a training state of this run "
                             f"({type(exc).__name__}: {exc})") from None
        if is_main:
            print(f"resumed from {last_path} at epoch {start_epoch}", flush=True)
    elif is_main:
        with open(csv_path, "w", newline="") as f:
            csv.writer(f).writerow(["epoch", "loss", "lr", "val_miou", "val_pixel_acc", "seconds"])

    recipe = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    recipe["world_size"] = world
    recipe["class_weight_values"] = weights.tolist() if weights is not None else None
    if init_recipe is not None:
        recipe["init_weights_recipe"] = init_recipe
    stop_epoch = args.epochs
    if args.stop_after_epochs:
        stop_epoch = min(args.epochs, start_epoch + args.stop_after_epochs)
    for epoch in range(start_epoch, stop_epoch):
        started = time.time()
        torch.manual_seed(args.seed * 100003 + epoch * 1009 + rank)  # dropout, reproducible
        train_model.train()
        order = epoch_order(len(train_set), epoch, args.seed, rank, world)
        total, count = 0.0, 0
        progress = _progress(per_epoch, f"epoch {epoch + 1}/{args.epochs}", is_main)
        loader = batches(train_set, order, args.batch_size, args.seed, epoch, args.workers)
        for i, (x, y) in enumerate(loader):
            if i >= per_epoch:
                break
            lr = poly_lr(args.lr, epoch * per_epoch + i, max_iter, args.poly_power)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=args.amp):
                logits = train_model(x)
                if args.stage == "encoder":
                    y = downsample_labels(y, logits.shape[-2:])
                loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total, count = total + loss.item(), count + 1
            progress.update(1)
            progress.set_postfix(loss=f"{total / count:.4f}", lr=f"{lr:.2e}")
        progress.close()
        miou = pixel_acc = float("nan")
        evaluated = (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs
        if evaluated:
            cm = evaluate(model, val_set, device, n_classes, rank, world, args.stage)
            miou, pixel_acc = cm.mean_iou(), cm.pixel_accuracy()
        if is_main:
            seconds = time.time() - started
            print(f"epoch {epoch + 1}: loss {total / max(count, 1):.4f} lr {lr:.3e} "
                  f"val mIoU {miou:.4f} pixel acc {pixel_acc:.4f} ({seconds:.0f} s)", flush=True)
            with open(csv_path, "a", newline="") as f:
                csv.writer(f).writerow([epoch + 1, total / max(count, 1), lr, miou, pixel_acc,
                                        round(seconds, 1)])
            plot_curves(csv_path, args.output_dir / "curves.png")
            if evaluated and miou > best_miou and args.stage == "full":
                best_miou = miou
                metrics = {"mean_iou": miou, "pixel_accuracy": pixel_acc, "epoch": epoch + 1,
                           "split": args.val_split, **cm.summary(class_set.names)}
                save_weights(args.output_dir / "best.safetensors", full_model,
                             WeightsMetadata.from_class_set(
                                 class_set, decoder=args.decoder, mean=list(args.mean),
                                 std=list(args.std), recipe=recipe, metrics=metrics,
                                 input_size=list(args.resize or args.eval_size
                                                 or _native_size(val_set))))
            elif evaluated and miou > best_miou:
                best_miou = miou
            save_state(last_path, {"model": model.state_dict(),
                                   "optimizer": optimizer.state_dict(),
                                   "scaler": scaler.state_dict(), "epoch": epoch,
                                   "best_miou": best_miou, "args": recipe})
        if world > 1:
            dist.barrier()
    return best_miou


def _dataset(dataset_cls, root: Path, split: str, transform):
    try:
        return dataset_cls(root, split, transform)
    except DatasetError as exc:
        raise SystemExit(f"dataset error: {exc}") from None


# What torch.load(weights_only=True) and load_state_dict raise for a file that is not a training
# state of ours: not a zip/pickle, truncated, objects the weights-only unpickler refuses, other keys.
UNREADABLE_STATE = (OSError, EOFError, KeyError, RuntimeError, TypeError, AttributeError,
                    pickle.UnpicklingError)


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
    """Load a .safetensors checkpoint of the same architecture into ``model``; return its recipe."""
    try:
        source, meta = load_weights(path, num_classes=model.num_classes,
                                    decoder=model.decoder_variant)
    except CheckpointError as exc:
        raise SystemExit(f"--init-weights: {exc}") from None
    model.load_state_dict(source.state_dict(), strict=True)
    return {"path": str(path), "recipe": meta.recipe, "metrics": meta.metrics}


def _native_size(dataset) -> tuple[int, int]:
    image, _ = dataset.load(0)
    return image.shape[1], image.shape[0]


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled or None, leave=False, file=sys.stderr)


def print_report(cm: ConfusionMatrix, names) -> None:
    print(f"mIoU {100 * cm.mean_iou():.2f}%  pixel accuracy {100 * cm.pixel_accuracy():.2f}%")
    for name, iou in zip(names, cm.iou()):
        print(f"  {name:<16} {100 * iou:6.2f}")


if __name__ == "__main__":
    main()
