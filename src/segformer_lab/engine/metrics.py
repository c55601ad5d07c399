"""Segmentation scores from one confusion matrix over a whole evaluation set.

The convention is mmseg's: per class, IoU = TP / (GT + Pred - TP) and accuracy =
TP / GT; a class absent from both ground truth and prediction has IoU NaN (absent from
the ground truth only: IoU 0, accuracy NaN), and mIoU / mAcc are NaN-means over
classes. aAcc is trace / total. Pixels labelled ``ignore_index`` are not counted.

``SegmentationMetrics`` is a torchmetrics ``Metric`` whose state is the confusion
matrix, summed across processes when ``compute`` runs under DDP; ``most_confused`` reads
the class pairs a model mixes up most from the same matrix.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from ..data import IGNORE_INDEX


def confusion_matrix(preds: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``[K, K]`` int64 counts, rows = ground truth, columns = prediction."""
    if preds.shape != target.shape:
        raise ValueError(f"predictions {tuple(preds.shape)} and labels {tuple(target.shape)} differ in shape")
    valid = target != ignore_index
    target, preds = target[valid].long(), preds[valid].long()
    if target.numel() and (target.min() < 0 or target.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}) or {ignore_index} (ignored); "
                         f"found {target.min().item()}..{target.max().item()}")
    return torch.bincount(target * num_classes + preds, minlength=num_classes**2).view(num_classes, num_classes)


def scores(confmat: torch.Tensor) -> dict[str, torch.Tensor]:
    """mIoU, mAcc, aAcc (fractions, 0-dim tensors) and per-class ``IoU``, ``Acc`` vectors."""
    confmat = confmat.double()
    tp, gt, pred = confmat.diag(), confmat.sum(1), confmat.sum(0)
    iou = tp / (gt + pred - tp)  # 0 / 0 = NaN: class absent from both
    acc = tp / gt
    return {"mIoU": iou.nanmean(), "mAcc": acc.nanmean(), "aAcc": tp.sum() / confmat.sum(), "IoU": iou, "Acc": acc}


def most_confused(confmat: torch.Tensor, n: int = 5) -> list[tuple[int, int, int, float]]:
    """The ``n`` largest off-diagonal cells of a confusion matrix (rows = ground truth) as
    ``(true class, predicted class, pixels, share of the true class's pixels)``, most
    pixels first (ties: lower class indices first); cells with no pixels are left out."""
    confmat = confmat.long().cpu()
    off = confmat.clone()
    off.fill_diagonal_(0)
    flat = off.flatten()
    order = torch.argsort(-flat, stable=True)[:n].tolist()  # stable: ties keep index order
    rows, k = confmat.sum(1), confmat.shape[0]
    return [(i // k, i % k, int(flat[i]), int(flat[i]) / int(rows[i // k])) for i in order if flat[i] > 0]


class SegmentationMetrics(Metric):
    """Accumulates a confusion matrix; ``compute()`` returns ``scores`` of it plus the
    (process-summed) matrix under ``"confmat"``. ``update`` takes label maps ``[..., H, W]``
    or logits ``[B, K, H, W]`` (argmax over K)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.is_floating_point():
            preds = preds.argmax(1)
        self.confmat += confusion_matrix(preds, target, self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, torch.Tensor]:
        return {**scores(self.confmat), "confmat": self.confmat.clone()}
