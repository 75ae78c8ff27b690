"""Confusion matrix, per-class IoU and mIoU: the one implementation for training and evaluation."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


class ConfusionMatrix:
    """Accumulates an n x n confusion matrix (rows: ground truth, columns: prediction).

    Ground-truth values outside ``[0, n)`` (255, or a dataset's void id) are ignored.
    """

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, target, prediction) -> None:
        """Add a batch: ``target`` and ``prediction``, integer arrays or tensors of one shape."""
        target = torch.as_tensor(np.asarray(target) if not torch.is_tensor(target) else target)
        prediction = torch.as_tensor(
            np.asarray(prediction) if not torch.is_tensor(prediction) else prediction
        )
        if target.shape != prediction.shape:
            raise ValueError(
                f"target shape {tuple(target.shape)} != prediction shape {tuple(prediction.shape)}"
            )
        n = self.num_classes
        target = target.reshape(-1).to(torch.int64).cpu()
        prediction = prediction.reshape(-1).to(torch.int64).cpu()
        valid = (target >= 0) & (target < n)
        index = n * target[valid] + prediction[valid].clamp(0, n - 1)
        self.matrix += torch.bincount(index, minlength=n * n).reshape(n, n)

    def reduce_from_all_processes(self) -> None:
        """Sum the counts of every process of the torch.distributed group, in place.

        A no-op where no process group is initialised (a single process).
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        device = "cpu"
        if dist.get_backend() == "nccl":  # NCCL reduces CUDA tensors only
            device = torch.device("cuda", torch.cuda.current_device())
        matrix = self.matrix.to(device)
        dist.all_reduce(matrix)
        self.matrix = matrix.cpu()

    def reset(self) -> None:
        self.matrix.zero_()

    def iou(self) -> np.ndarray:
        """Per-class IoU = TP / (TP + FP + FN); NaN for a class in neither target nor output."""
        m = self.matrix.double()
        tp = m.diag()
        union = m.sum(0) + m.sum(1) - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        return iou.numpy()

    def mean_iou(self) -> float:
        """Mean of the per-class IoU over classes that occur (NaN ignored)."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = int(self.matrix.sum())
        return float(self.matrix.diag().sum()) / total if total else float("nan")

    def summary(self, class_names=None) -> dict:
        """JSON-compatible summary: mIoU, pixel accuracy, per-class IoU (None where undefined)."""
        names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        iou = self.iou()
        return {
            "mean_iou": self.mean_iou(),
            "pixel_accuracy": self.pixel_accuracy(),
            "per_class_iou": {
                name: (None if np.isnan(v) else float(v)) for name, v in zip(names, iou)
            },
            "pixels": int(self.matrix.sum()),
        }
