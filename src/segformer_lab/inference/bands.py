"""Class scores a band of rows at a time, so that no full-size ``[B, K, H, W]`` score map
is needed to predict a label map.

A *source* gives the rows of one view's scores: ``WholeSource`` the model's stride-4
logits of the whole input (computed once), ``SlideSource`` the window average at the
input size, built from the stride-4 logits of the rows of windows that cover the rows
asked for (each row of windows runs once; its logits are dropped when the rows asked
for have passed it). ``resized_rows`` resizes rows of a source bilinearly, reading only
the source rows they depend on. Rows must be asked for top to bottom.

The numbers are today's ``F.interpolate(..., mode="bilinear", align_corners=False)``
and mmseg's window average, up to float rounding: rows are interpolated here with
PyTorch's source-index formula, columns by ``F.interpolate`` itself.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

RowReader = Callable[[int, int], torch.Tensor]


def upsample(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of ``[B, K, h, w]`` to ``size``; a no-op if already that size."""
    size = tuple(size)
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Start offsets of windows of ``crop`` every ``stride`` covering ``length``, the last
    one flush with the end (mmseg's grid); one window when ``crop >= length``."""
    if crop >= length:
        return [0]
    count = math.ceil((length - crop) / stride) + 1
    return [min(i * stride, length - crop) for i in range(count)]


def resized_rows(read: RowReader, in_size: Sequence[int], out_size: Sequence[int], start: int,
                 stop: int) -> torch.Tensor:
    """Rows ``start:stop`` of the bilinear resize (``align_corners=False``) to ``out_size``
    of a ``[B, K, *in_size]`` map whose rows ``lo:hi`` are ``read(lo, hi)``."""
    (in_h, in_w), (out_h, out_w) = in_size, out_size
    if in_h == out_h:
        rows = read(start, stop)
    elif (start, stop) == (0, out_h):  # every row: PyTorch's own 2-D kernel (about 1.4x faster)
        return upsample(read(0, in_h), out_size)
    else:  # PyTorch's source index: (dst + 0.5) * in / out - 0.5, clamped to the map
        scale = torch.tensor(in_h / out_h, dtype=torch.float32)
        source = ((torch.arange(start, stop, dtype=torch.float32) + 0.5) * scale - 0.5).clamp_(min=0)
        first = source.floor().long().clamp_(max=in_h - 1)
        second = (first + 1).clamp_(max=in_h - 1)
        weight = (source - first).clamp_(0, 1)
        lo, hi = int(first[0]), int(second[-1]) + 1
        band = read(lo, hi)
        exact = torch.promote_types(band.dtype, torch.float32)  # as PyTorch's opmath for half types
        weight = weight.to(band.device, exact).view(-1, 1)
        rows = band.index_select(-2, (first - lo).to(band.device)).to(exact).mul_(1 - weight)
        rows = rows.add_(band.index_select(-2, (second - lo).to(band.device)).to(exact).mul_(weight)).to(band.dtype)
    return upsample(rows, (stop - start, out_w)) if in_w != out_w else rows


class WholeSource:
    """The model's logits of the whole input, at stride 4."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits
        self.size = tuple(logits.shape[-2:])
        self.channels, self.dtype = logits.shape[1], logits.dtype

    def rows(self, start: int, stop: int) -> torch.Tensor:
        return self.logits[..., start:stop, :]


class SlideSource:
    """Logits at the input size from overlapping windows, averaged where they overlap
    (as mmseg), one band of rows at a time. ``flipped``: of the horizontally flipped
    input (windows are cut from ``pixel_values`` and flipped, so no flipped copy of the
    image is made)."""

    def __init__(self, model: nn.Module, pixel_values: torch.Tensor, crop: tuple[int, int],
                 stride: tuple[int, int], flipped: bool = False) -> None:
        self.model, self.pixel_values, self.flipped = model, pixel_values, flipped
        height, width = self.size = tuple(pixel_values.shape[-2:])
        self.window = (min(crop[0], height), min(crop[1], width))
        self.tops = window_starts(height, crop[0], stride[0])
        self.lefts = window_starts(width, crop[1], stride[1])
        self.row_cover = self._cover(height, self.tops, self.window[0])
        self.column_cover = self._cover(width, self.lefts, self.window[1])
        self.live: dict[int, list[WholeSource]] = {}  # top -> stride-4 logits of its windows
        self.ran = 0  # rows of windows run so far
        self.asked = 0  # the first row of the last band asked for
        self._run_next_row()  # gives the class count and dtype

    @staticmethod
    def _cover(length: int, starts: list[int], size: int) -> torch.Tensor:
        """How many windows cover each position."""
        cover = torch.zeros(length)
        for start in starts:
            cover[start:start + size] += 1
        return cover

    def _run_next_row(self) -> None:
        top, (height, width) = self.tops[self.ran], self.window
        logits = []
        for left in self.lefts:
            if self.flipped:  # column ``left`` of the flipped image is column W - 1 - left here
                right = self.size[1] - left
                window = self.pixel_values[..., top:top + height, right - width:right].flip(-1)
            else:
                window = self.pixel_values[..., top:top + height, left:left + width]
            logits.append(WholeSource(self.model(window)))
        self.live[top] = logits
        self.ran += 1
        self.channels, self.dtype = logits[0].channels, logits[0].dtype

    def rows(self, start: int, stop: int) -> torch.Tensor:
        if start < self.asked:
            raise ValueError(f"rows are read top to bottom: asked for row {start} after row {self.asked}")
        self.asked = start
        height, width = self.window
        while self.ran < len(self.tops) and self.tops[self.ran] < stop:
            self._run_next_row()
        for top in [top for top in self.live if top + height <= start]:
            del self.live[top]
        batch = self.pixel_values.shape[0]
        band = torch.zeros(batch, self.channels, stop - start, self.size[1], dtype=self.dtype,
                           device=self.pixel_values.device)
        for top, row in self.live.items():  # in order: the sums are added as mmseg adds them
            lo, hi = max(start, top), min(stop, top + height)
            if lo >= hi:
                continue
            for left, logits in zip(self.lefts, row):
                piece = resized_rows(logits.rows, logits.size, self.window, lo - top, hi - top)
                band[..., lo - start:hi - start, left:left + width] += piece
        cover = self.row_cover[start:stop, None] * self.column_cover[None, :]
        return band.div_(cover.to(band.device, band.dtype))
