"""BatchNorm statistics recomputed on a camera's frames, and what the adaptation methods share.

No ROS import. core.adaptation.methods builds its three methods on recompute_bn_statistics.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import ctypes.util
import functools
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from lednet_ros.core.adaptation import MIN_FRAMES
from lednet_ros.core.inference.model import LEDNet
from lednet_ros.core.inference.network_io import preprocess

BN_BATCH_SIZE = 16

Progress = Callable[[int, int], None]  # (steps done, steps in all)


class AdaptationError(ValueError):
    """Adaptation that cannot run: the message names the bad source, value or setting."""


# ---- BatchNorm statistics --------------------------------------------------------------------

def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Return the model's BatchNorm layers, in module order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def model_device(model: nn.Module) -> torch.device:
    """Return the device of the model's parameters."""
    return next(model.parameters()).device


def network_inputs(frames, indices, input_size, mean, std, device) -> torch.Tensor:
    """Return the frames at ``indices`` preprocessed and stacked into one network input."""
    return torch.cat([preprocess(frames[i], input_size, mean, std, device) for i in indices])


@torch.no_grad()
def recompute_bn_statistics(model: LEDNet, frames: Sequence[np.ndarray], input_size, mean, std,
                            *, batch_size: int = BN_BATCH_SIZE, seed: int = 0, prior: float = 0.0,
                            depth: float = 1.0, progress: Progress | None = None) -> LEDNet:
    """Return a copy of ``model`` whose BatchNorm running statistics are those of ``frames``.

    The cumulative average (momentum None) over batches of frames at ``input_size``, in a
    shuffled order (consecutive frames of one video would make each batch's statistics its
    own); only the BatchNorms run in training mode (dropout stays off), and no weight changes.

    Args:
        model: the weights to adapt; not modified.
        frames: H x W x 3 uint8 RGB arrays, at least MIN_FRAMES.
        input_size: network input (width, height).
        mean, std: the weights' input normalisation (metadata).
        batch_size: frames per batch (at least 2; larger gives statistics closer to the whole
            set's; the last batches take the frames left over).
        seed: the shuffle's seed.
        prior: weight of ``model``'s own statistics in the result, in [0, 1]: each BatchNorm's
            mean and variance become those of the mixture of the two distributions (0: the
            frames' alone; 1: the model's own, e.g. for entropy minimisation on them).
        depth: the share of the BatchNorms recomputed, counted in the network's order from the
            input (the first floor(depth x count); the deeper keep the model's own statistics):
            a new camera's colours and exposure show in the shallow layers, while the deep
            layers' statistics also describe the scene's content, which 90 frames of one
            street sample poorly. In (0, 1]; 1: every BatchNorm.
        progress: called with (batches done, batches in all).
    """
    if not 0.0 <= prior <= 1.0:
        raise AdaptationError(f"BatchNorm prior weight {prior}: expected a value in [0, 1]")
    if not 0.0 < depth <= 1.0:
        raise AdaptationError(f"BatchNorm depth {depth}: expected a share in (0, 1]")
    if len(frames) < MIN_FRAMES:
        raise AdaptationError(f"{len(frames)} frames: BatchNorm statistics need at least "
                              f"{MIN_FRAMES}")
    if batch_size < 2:
        raise AdaptationError(f"batch size {batch_size}: BatchNorm statistics need at least 2")
    adapted = copy.deepcopy(model).eval()
    norms = batch_norms(adapted)
    norms = norms[:max(1, int(depth * len(norms)))]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    order = np.random.default_rng(seed).permutation(len(frames))
    batches = np.array_split(order, max(1, len(frames) // batch_size))
    device = model_device(adapted)
    for done, batch in enumerate(batches, 1):
        adapted(network_inputs(frames, batch, input_size, mean, std, device))
        if progress is not None:
            progress(done, len(batches))
    for norm, source, momentum in zip(norms, batch_norms(model), momenta):
        norm.momentum = momentum
        if prior:
            mean, var = source.running_mean, source.running_var
            shift = norm.running_mean - mean
            norm.running_var.mul_(1 - prior).add_(prior * var + prior * (1 - prior) * shift ** 2)
            norm.running_mean.mul_(1 - prior).add_(prior * mean)
    return adapted.eval()


@torch.no_grad()
def mean_prediction(model: LEDNet, frames, input_size, mean, std, batch_size: int,
                    progress: Progress | None = None):
    """Return the model's softmax averaged over every pixel of the frames (a share per class).

    ``progress`` is called with (batches done, batches in all: ceil(frames / batch_size)).
    """
    device = model_device(model)
    total = torch.zeros(model.num_classes, device=device)
    starts = range(0, len(frames), batch_size)
    for done, start in enumerate(starts, 1):
        x = network_inputs(frames, range(start, min(start + batch_size, len(frames))),
                           input_size, mean, std, device)
        total += model(x).softmax(1).sum((0, 2, 3))
        if progress is not None:
            progress(done, len(starts))
    return (total / total.sum()).clamp_min(1e-8)


def release_freed_memory() -> None:
    """Return the heap's freed pages to the system (glibc's malloc_trim; elsewhere nothing).

    Between the stages of an adaptation: the freed buffers of one stage, scattered between live
    ones, otherwise stay resident while the next stage allocates its own (measured: the last
    BatchNorm recomputation of self-training 1.72 GB resident with, 1.39 GB without them).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # a C library without it: not glibc
        return None


@contextlib.contextmanager
def checkpointed(model: LEDNet, segments: int):
    """Within the block ``model``'s encoder recomputes its activations in the backward pass.

    In ``segments`` segments (LEDNet's Encoder.checkpoint_segments; 0: activations kept).
    """
    model.encoder.checkpoint_segments = segments
    try:
        yield model
    finally:
        model.encoder.checkpoint_segments = 0


class StepCounter:
    """Reports steps of several stages as one count to a Progress callback."""

    def __init__(self, progress: Progress | None, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def add(self, steps: int) -> None:
        self.done += steps
        if self.progress is not None:
            self.progress(self.done, self.total)

    def stage(self) -> Progress:
        start = self.done

        def report(done: int, _total: int) -> None:
            self.done = start + done
            if self.progress is not None:
                self.progress(self.done, self.total)

        return report


@torch.no_grad()
def single_value_norms(model: LEDNet, input_size) -> list:
    """Return the BatchNorms that get one value per channel of a frame at ``input_size``.

    Training mode cannot normalise those over a single frame; found by one forward pass.
    """
    found, hooks = [], []
    for norm in batch_norms(model):
        hooks.append(norm.register_forward_hook(
            lambda module, inputs, _out: found.append(module)
            if inputs[0][0, 0].numel() == 1 else None))
    was_training = model.training
    try:
        model.eval()(torch.zeros(1, 3, input_size[1], input_size[0],
                                 device=model_device(model)))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return found
