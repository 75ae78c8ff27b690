"""Adapting weights to a new camera from unlabelled frames. No ROS import.

Three methods, none sees a label:

- ``bn``: recompute the BatchNorm running statistics on the camera's frames (every other weight
  kept), those of the shallower layers only (``bn_depth``) and optionally mixed with the base
  weights' own (``bn_prior``): the cheapest fix for a new camera's colours and exposure.
- ``entropy``: ``bn``, then the BatchNorms' affine weights alone learn to make the predictions
  confident (entropy minimisation, as TENT: Wang et al., ICLR 2021), the statistics kept.
- ``self-training``: ``bn``, then pseudo-labels from the adapted model's confident pixels (a
  threshold per class, so rare classes keep some pixels), a short fine-tune on them with
  augmentation, and ``bn`` again.

Frames come from videos, image folders or rosbag2 topics (frame_sampling.gather_frames). Every
function returns a new model and leaves the one it is given untouched, so a node
can adapt in the background while it keeps segmenting with the old weights. The result is an
ordinary weights file whose metadata says how it was made (adapted_metadata) and quotes no mIoU:
the base weights' score was measured on another camera.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# METHODS, AdaptationError, MIN_FRAMES and recompute_bn_statistics are this module's API too.
from lednet_ros.core.adaptation import METHODS
from lednet_ros.core.adaptation.augmentation import augment, unit_batch
from lednet_ros.core.adaptation.batchnorm import (  # noqa: F401
    BN_BATCH_SIZE, MIN_FRAMES, AdaptationError, Progress, StepCounter, batch_norms, checkpointed,
    mean_prediction, model_device, network_inputs, recompute_bn_statistics, release_freed_memory,
    single_value_norms,
)
from lednet_ros.core.data.classes import IGNORE_INDEX
from lednet_ros.core.inference.checkpoint import WeightsMetadata
from lednet_ros.core.inference.model import LEDNet
from lednet_ros.core.inference.network_io import normalisation



# ---- settings and self-training ------------------------------------------------------------

@dataclass(frozen=True)
class AdaptationSettings:
    """How the methods run (recorded in the adapted weights' metadata); checked when built.

    bn reads bn_batch_size, bn_prior, bn_depth and seed; entropy those, batch_size, micro_batch,
    checkpoint_segments and entropy_*; self-training all but entropy_*.

    Attributes:
        epochs: passes over the frames.
        batch_size: frames per step.
        lr: Adam's learning rate.
        threshold: a pixel's softmax maximum must reach this to be a pseudo-label...
        class_quantile: ...or, when lower, this quantile of the confidences of the pixels
            predicted as its class (0: the global threshold alone), so rare and hard classes
            keep some pixels.
        flip_labels: pseudo-labels from the mean of each frame's and its mirror's predictions.
        refresh_labels: pseudo-labels made again by the current model before every epoch.
        teacher_momentum: pseudo-labels made by an exponential average of the model instead
            (mean teacher): after each step its weights become this x theirs + (1 - this) x
            the model's; its BatchNorm statistics stay those of ``bn`` (0: the model itself).
        freeze_bn: BatchNorm statistics fixed while fine-tuning (the affine weights learn).
        class_balanced: cross-entropy weighted by 1 / ln(1.02 + class frequency) of the
            pseudo-labels (ENet's weighting).
        scale: range of the random rescale before a crop at the input size.
        color_jitter: brightness, contrast and saturation factors drawn from [1-s, 1+s].
        bn_batch_size: batch of the BatchNorm recomputations before and after.
        bn_prior: weight of the base weights' own BatchNorm statistics mixed into those of the
            frames, in every recomputation (0: the frames' alone).
        bn_depth: the share of the BatchNorms, from the input, whose statistics every
            recomputation takes from the frames; the deeper keep the base weights' (1: all;
            0.5 chosen in docs/weights.md).
        micro_batch: frames per forward pass; a step's gradients are summed over its
            micro-batches (the loss exactly the batch's), so memory grows with this, not with
            batch_size. At 1 the BatchNorms that see one value per channel of a frame (the
            decoder's global branch; its pyramid's coarsest level at small inputs) keep their
            statistics while self-training (single_value_norms; all are recomputed after).
        checkpoint_segments: while training (both methods), the encoder's activations are
            recomputed in the backward pass, in this many segments, instead of kept (gradient
            checkpointing: the same gradients in about 0.3 GB less at 480x360, each step a
            third slower; 0: kept).
        entropy_epochs: passes of the entropy method over the frames.
        entropy_lr: the entropy method's Adam learning rate.
        entropy_marginal: weight of a second term of the entropy method's loss: the KL
            divergence of each micro-batch's mean prediction from the mean prediction of
            ``bn``'s model over all the frames, so that the classes keep their shares while the
            pixels grow confident (0: off; entropy alone narrows the classes it uses).
        seed: shuffles and augmentation.
    """

    epochs: int = 4
    batch_size: int = 8
    lr: float = 1e-4
    threshold: float = 0.9
    class_quantile: float = 0.5
    flip_labels: bool = False
    refresh_labels: bool = True
    teacher_momentum: float = 0.0
    freeze_bn: bool = False
    class_balanced: bool = False
    scale: tuple[float, float] = (0.75, 1.5)
    color_jitter: float = 0.2
    bn_batch_size: int = BN_BATCH_SIZE
    bn_prior: float = 0.0
    bn_depth: float = 0.5
    micro_batch: int = 2
    checkpoint_segments: int = 8
    entropy_epochs: int = 3
    entropy_lr: float = 1e-3
    entropy_marginal: float = 3.0
    seed: int = 0

    def __post_init__(self):
        """AdaptationError naming the first setting out of range."""
        checks = {
            "epochs": self.epochs >= 1, "batch_size": self.batch_size >= 2,
            "lr": self.lr > 0, "threshold": 0.0 < self.threshold <= 1.0,
            "class_quantile": 0.0 <= self.class_quantile < 1.0,
            "teacher_momentum": 0.0 <= self.teacher_momentum < 1.0,
            "scale": 0.0 < self.scale[0] <= self.scale[1],
            "color_jitter": 0.0 <= self.color_jitter < 1.0,
            "bn_batch_size": self.bn_batch_size >= 2,
            "bn_prior": 0.0 <= self.bn_prior <= 1.0,
            "bn_depth": 0.0 < self.bn_depth <= 1.0,
            "micro_batch": 1 <= self.micro_batch,
            "checkpoint_segments": 0 <= self.checkpoint_segments,
            "entropy_epochs": self.entropy_epochs >= 1, "entropy_lr": self.entropy_lr > 0,
            "entropy_marginal": self.entropy_marginal >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise AdaptationError(f"adaptation setting {name} = {getattr(self, name)!r} "
                                      "is out of range")


@torch.no_grad()
def pseudo_labels(model: LEDNet, frames: Sequence[np.ndarray], input_size, mean, std, *,
                  threshold: float = 0.9, class_quantile: float = 0.0, flip: bool = False,
                  batch_size: int = 2) -> torch.Tensor:
    """Return N x h x w uint8 pseudo-labels at ``input_size``: confident pixels' classes, else 255.

    A pixel is kept when its softmax maximum reaches its predicted class's threshold: the lower
    of ``threshold`` and the ``class_quantile`` quantile of that class's confidences over all
    frames (to 1/1000). With ``flip`` the probabilities are the mean of the frame's and its
    mirror image's.
    """
    model = copy.deepcopy(model).eval()
    device = model_device(model)
    bins = 1000
    histogram = torch.zeros(model.num_classes * bins, dtype=torch.long)  # class x confidence
    # allocated once: kept results made batch by batch between the batches' temporaries would
    # fragment the heap (measured: +7 MB of resident memory per frame, 0.6 GB for 90 frames)
    width, height = input_size
    labels = torch.empty((len(frames), height, width), dtype=torch.uint8)
    confidences = torch.empty((len(frames), height, width), dtype=torch.float32)
    for start in range(0, len(frames), batch_size):
        part = slice(start, min(start + batch_size, len(frames)))
        x = network_inputs(frames, range(part.start, part.stop), input_size, mean, std, device)
        probabilities = model(x).softmax(1)
        if flip:
            probabilities = (probabilities + model(x.flip(-1)).softmax(1).flip(-1)) / 2
        confidence, label = probabilities.max(1)
        labels[part], confidences[part] = label.cpu(), confidence.cpu()
        if class_quantile > 0:  # counted per batch: no temporaries over all the frames
            binned = (confidences[part] * (bins - 1)).round().long().clamp(0, bins - 1)
            histogram += torch.bincount((labels[part].long() * bins + binned).flatten(),
                                        minlength=model.num_classes * bins)
    thresholds = torch.full((256,), float(threshold))
    if class_quantile > 0:
        cumulative = histogram.view(model.num_classes, bins).cumsum(1).double()
        for cls in range(model.num_classes):
            if cumulative[cls, -1] > 0:
                position = torch.searchsorted(cumulative[cls],
                                              class_quantile * cumulative[cls, -1])
                thresholds[cls] = min(threshold, int(position) / (bins - 1))
    for frame_labels, frame_confidences in zip(labels, confidences):  # in place, frame by frame
        frame_labels[frame_confidences < thresholds[frame_labels.long()]] = IGNORE_INDEX
    return labels


def class_balanced_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Return ENet's class weights 1 / ln(1.02 + frequency) from labels (255 ignored)."""
    counts = torch.bincount(labels[labels != IGNORE_INDEX].long().flatten(),
                            minlength=num_classes)[:num_classes].double()
    frequency = counts / counts.sum().clamp(min=1)
    return (1.0 / torch.log(1.02 + frequency)).float()


def self_train(model: LEDNet, frames: Sequence[np.ndarray], input_size, mean, std,
               settings: AdaptationSettings = AdaptationSettings(),
               progress: Progress | None = None) -> LEDNet:
    """Return a copy of ``model`` adapted by self-training on ``frames`` (see the module doc).

    Args:
        model: the weights to adapt; not modified.
        frames: H x W x 3 uint8 RGB arrays, at least MIN_FRAMES.
        input_size: network input (width, height); pseudo-labels and training at this size.
        mean, std: the weights' input normalisation.
        settings: epochs, thresholds, augmentation...
        progress: called with (steps done, steps in all).
    """
    steps = StepCounter(progress, total=self_training_steps(len(frames), settings))
    bn = _bn_options(settings)
    adapted = recompute_bn_statistics(model, frames, input_size, mean, std, **bn,
                                      progress=steps.stage())
    generator = np.random.default_rng(settings.seed)
    device = model_device(adapted)
    scale, shift = normalisation(tuple(mean), tuple(std), device)
    optimizer = torch.optim.Adam([p for p in adapted.parameters() if p.requires_grad],
                                 lr=settings.lr)
    # the teacher that makes the pseudo-labels: the model itself, or its exponential average
    teacher = copy.deepcopy(adapted).eval() if settings.teacher_momentum else adapted
    labels = None
    for epoch in range(settings.epochs):
        if labels is None or settings.refresh_labels:
            labels = None  # the last epoch's freed before the new are made
            release_freed_memory()
            labels = pseudo_labels(teacher, frames, input_size, mean, std,
                                   threshold=settings.threshold,
                                   class_quantile=settings.class_quantile,
                                   flip=settings.flip_labels)
            weights = (class_balanced_weights(labels, adapted.num_classes).to(device)
                       if settings.class_balanced else None)
            steps.add(1)
        adapted.train()
        fixed = (batch_norms(adapted) if settings.freeze_bn else
                 single_value_norms(adapted, input_size) if settings.micro_batch == 1 else [])
        for norm in fixed:
            norm.eval()
        order = generator.permutation(len(frames))
        for batch in np.array_split(order, max(1, len(frames) // settings.batch_size)):
            x, y = augment(unit_batch(frames, batch, input_size),
                           labels[torch.from_numpy(batch)].long(), settings.scale,
                           settings.color_jitter, generator)
            x, y = x.to(device).mul_(255.0).mul_(scale).sub_(shift), y.to(device)
            counted = y != IGNORE_INDEX  # the loss is the mean over the batch's counted pixels
            total = (weights[y[counted]].sum() if weights is not None else counted.sum())
            if total > 0:  # a batch without one confident pixel has no loss
                optimizer.zero_grad(set_to_none=True)
                with checkpointed(adapted, settings.checkpoint_segments):
                    for chunk in _micro_batches(len(batch), settings.micro_batch):
                        loss = F.cross_entropy(adapted(x[chunk]), y[chunk], weight=weights,
                                               ignore_index=IGNORE_INDEX, reduction="sum")
                        (loss / total).backward()
                optimizer.step()
                if teacher is not adapted:
                    _follow(teacher, adapted, settings.teacher_momentum)
            steps.add(1)
    del optimizer, labels, x, y, teacher  # their memory is free for the last recomputation
    adapted.zero_grad(set_to_none=True)
    release_freed_memory()
    return recompute_bn_statistics(adapted.eval(), frames, input_size, mean, std, **bn,
                                   progress=steps.stage())


@torch.no_grad()
def _follow(teacher: LEDNet, student: LEDNet, momentum: float) -> None:
    """Move the teacher's weights to ``momentum`` x its own + (1 - momentum) x the student's."""
    for mine, theirs in zip(teacher.parameters(), student.parameters()):
        mine.mul_(momentum).add_(theirs, alpha=1.0 - momentum)


def _micro_batches(frames: int, size: int) -> list[np.ndarray]:
    """Index arrays splitting a batch into parts of at least ``size`` frames."""
    return np.array_split(np.arange(frames), max(1, frames // size))


def _bn_batches(frames: int, settings: AdaptationSettings) -> int:
    """Batches of one BatchNorm recomputation (as recompute_bn_statistics splits them)."""
    return max(1, frames // settings.bn_batch_size)


def _bn_options(settings: AdaptationSettings) -> dict:
    return dict(batch_size=settings.bn_batch_size, seed=settings.seed, prior=settings.bn_prior,
                depth=settings.bn_depth)


# ---- entropy minimisation --------------------------------------------------------------------

def minimise_entropy(model: LEDNet, frames: Sequence[np.ndarray], input_size, mean, std,
                     settings: AdaptationSettings = AdaptationSettings(),
                     progress: Progress | None = None) -> LEDNet:
    """Return a copy of ``model``: ``bn``, then its BatchNorms' affine weights fitted to frames.

    The mean per-pixel entropy of the softmax (plus ``entropy_marginal`` x the divergence of
    the class shares from ``bn``'s, see AdaptationSettings) is minimised by Adam
    (``entropy_lr``) over ``entropy_epochs`` passes in batches of ``batch_size`` (summed over
    micro-batches), the statistics fixed at those of ``bn`` (the network in inference mode:
    dropout off) and every other weight kept.
    """
    batches = max(1, len(frames) // settings.batch_size)
    marginal = settings.entropy_marginal
    share_batches = -(-len(frames) // settings.micro_batch) if marginal else 0
    steps = StepCounter(progress, total=_bn_batches(len(frames), settings) + share_batches
                         + settings.entropy_epochs * batches)
    adapted = recompute_bn_statistics(model, frames, input_size, mean, std,
                                      **_bn_options(settings), progress=steps.stage())
    affine = [p for norm in batch_norms(adapted) for p in (norm.weight, norm.bias)]
    learning = {id(p) for p in affine}
    for parameter in adapted.parameters():
        parameter.requires_grad_(id(parameter) in learning)
    optimizer = torch.optim.Adam(affine, lr=settings.entropy_lr)
    generator = np.random.default_rng(settings.seed)
    device = model_device(adapted)
    log_shares = (mean_prediction(adapted, frames, input_size, mean, std, settings.micro_batch,
                                  steps.stage()).log() if marginal else None)
    for _epoch in range(settings.entropy_epochs):
        for batch in np.array_split(generator.permutation(len(frames)), batches):
            optimizer.zero_grad(set_to_none=True)
            with checkpointed(adapted, settings.checkpoint_segments):
                for chunk in _micro_batches(len(batch), settings.micro_batch):
                    x = network_inputs(frames, batch[chunk], input_size, mean, std, device)
                    logits = adapted(x)
                    probabilities = logits.softmax(1)
                    entropy = -(probabilities * logits.log_softmax(1)).sum(1)
                    loss = entropy.sum() / (entropy[0].numel() * len(batch))
                    if marginal:  # KL(the micro-batch's mean prediction || bn's over the frames)
                        chunk_shares = probabilities.mean((0, 2, 3))
                        divergence = (chunk_shares * (chunk_shares.clamp_min(1e-8).log()
                                                      - log_shares)).sum()
                        loss = loss + marginal * divergence * len(chunk) / len(batch)
                    loss.backward()
            optimizer.step()
            steps.add(1)
    for parameter in adapted.parameters():
        parameter.requires_grad_(True)
    return adapted.eval()


def self_training_steps(frames: int, settings: AdaptationSettings) -> int:
    """Progress steps of self_train: BN batches, pseudo-labellings and training batches."""
    bn_batches = _bn_batches(frames, settings)
    labellings = settings.epochs if settings.refresh_labels else 1
    return 2 * bn_batches + labellings + settings.epochs * max(1, frames // settings.batch_size)


# ---- the whole adaptation --------------------------------------------------------------------

def adapt(model: LEDNet, metadata: WeightsMetadata, frames: Sequence[np.ndarray], *,
          method: str = "bn", input_size=None, settings: AdaptationSettings | None = None,
          progress: Progress | None = None) -> LEDNet:
    """Return a copy of ``model`` adapted to ``frames`` by ``method`` (one of METHODS).

    ``input_size`` defaults to the weights' own; ``settings`` to AdaptationSettings() (which
    fields each method reads: its doc).
    """
    input_size = tuple(input_size or metadata.input_size)
    settings = settings or AdaptationSettings()
    if method == "bn":
        return recompute_bn_statistics(model, frames, input_size, metadata.mean, metadata.std,
                                       **_bn_options(settings), progress=progress)
    if method == "entropy":
        return minimise_entropy(model, frames, input_size, metadata.mean, metadata.std,
                                settings, progress)
    if method == "self-training":
        return self_train(model, frames, input_size, metadata.mean, metadata.std, settings,
                          progress)
    raise AdaptationError(f"adaptation method {method!r}: expected one of {', '.join(METHODS)}")


def adapted_metadata(base: WeightsMetadata, *, method: str, sources: list[dict],
                     base_sha256: str, input_size, settings: dict | None = None,
                     base_path: str = "") -> WeightsMetadata:
    """Return the adapted weights' metadata: the base's classes, how they were adapted, no mIoU.

    The recipe records the method, each source with its frame count, the input size, the
    settings, and the base weights (SHA-256, file, recipe). The metrics are empty: the base's
    scores were measured on another camera and are not the adapted weights' own, so
    reported_mean_iou is None.
    """
    width, height = (int(v) for v in input_size)
    recipe = {
        "adaptation": {
            "method": method,
            "sources": sources,
            "frames": sum(int(s.get("frames", 0)) for s in sources),
            "input_size": [width, height],
            "settings": settings or {},
            "labels_used": False,
        },
        "base_weights": {"sha256": base_sha256, "path": str(base_path), "dataset": base.dataset,
                         "recipe": base.recipe},
    }
    return WeightsMetadata(
        num_classes=base.num_classes, class_names=list(base.class_names),
        class_colors=[list(c) for c in base.class_colors], decoder=base.decoder,
        dataset=base.dataset, ignore_index=base.ignore_index, mean=list(base.mean),
        std=list(base.std), input_size=[width, height], recipe=recipe, metrics={})


def settings_record(method: str, settings: AdaptationSettings | None) -> dict:
    """Return the settings ``method`` used, as JSON data for adapted_metadata."""
    settings = settings or AdaptationSettings()
    bn = {"batch_size": settings.bn_batch_size, "seed": settings.seed, "momentum": None,
          "prior": settings.bn_prior, "depth": settings.bn_depth}
    if method == "bn":
        return bn
    if method == "entropy":
        return {"bn": bn, "batch_size": settings.batch_size, "micro_batch": settings.micro_batch,
                "epochs": settings.entropy_epochs, "lr": settings.entropy_lr,
                "marginal": settings.entropy_marginal,
                "checkpoint_segments": settings.checkpoint_segments}
    record = asdict(settings)
    record["scale"] = list(record["scale"])
    return record
