"""Training and validation loaders, with a data order that survives a restart.

The training order of epoch ``e`` is a permutation drawn from ``seed + e``, sharded over
processes, and every sample gets an augmentation seed drawn from ``seed + e`` too (the
sampler yields ``(index, sample seed)``; the dataset reseeds its transforms with it). The
loader tells Lightning how many batches of the epoch it has delivered (``state_dict``),
so a run resumed from a mid-epoch checkpoint continues with the next unseen batch,
augmented exactly as it would have been, whatever the number of workers. Validation
shards the set without padding, so every image is scored exactly once under DDP.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data import BaseDataset, build_dataset, build_transforms, collate


class EpochSampler(Sampler):
    """This process's share of the permutation of ``seed + epoch`` (every ``num_replicas``-th
    index from ``rank``) as ``(index, sample seed)`` pairs, the seeds also drawn from
    ``seed + epoch`` (one per dataset index; ``sample_seeds=False``: plain indices, for
    datasets that take only those). The tail that does not divide evenly is dropped, so
    all processes take the same number of steps. ``start`` skips that many indices once
    (resuming)."""

    def __init__(self, size: int, seed: int = 0, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 sample_seeds: bool = True) -> None:
        if size < num_replicas:
            raise ValueError(f"{size} training samples cannot be shared by {num_replicas} processes")
        self.size, self.seed, self.num_replicas, self.rank, self.shuffle = size, seed, num_replicas, rank, shuffle
        self.sample_seeds = sample_seeds
        self.epoch = self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.num_replicas

    def __iter__(self) -> Iterator[tuple[int, int] | int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator) if self.shuffle else torch.arange(self.size)
        seeds = torch.randint(2**31, (self.size,), generator=generator)
        mine = order[self.rank:len(self) * self.num_replicas:self.num_replicas]
        start, self.start = self.start, 0
        mine = mine[start:]
        return zip(mine.tolist(), seeds[mine].tolist()) if self.sample_seeds else iter(mine.tolist())


@contextmanager
def _sigterm_held() -> Iterator[None]:
    """SIGTERM held back (blocked) while loader workers start: they inherit the block and
    ignore the signal before they unblock it (``_ignore_sigterm``), so a SIGTERM sent to the
    process group as they start cannot kill one; this process receives it when the block
    ends."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class WorkerSafeLoader(DataLoader):
    """A DataLoader whose workers start with SIGTERM held back (``_sigterm_held``)."""

    def __iter__(self) -> Iterator[Any]:
        with _sigterm_held():
            return super().__iter__()  # the workers start here


class ResumableLoader(WorkerSafeLoader):
    """A training DataLoader over an ``EpochSampler`` that Lightning checkpoints: its
    state is (epoch, batches delivered), restored as a skip at the start of that epoch."""

    def __init__(self, dataset: Dataset, sampler: EpochSampler, **kwargs: Any) -> None:
        super().__init__(dataset, sampler=sampler, generator=torch.Generator(), **kwargs)
        self.delivered = 0
        self._resume: dict[str, int] | None = None

    def __iter__(self) -> Iterator[Any]:
        skip = 0
        if self._resume is not None and self._resume["epoch"] == self.sampler.epoch:
            skip = self._resume["batches"]
        self._resume = None
        self.sampler.start = skip * self.batch_size
        self.generator.manual_seed(self.sampler.seed + self.sampler.epoch)  # worker seeds of this epoch
        self.delivered = skip
        for batch in super().__iter__():
            self.delivered += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches": self.delivered}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = dict(state)


def _ignore_sigterm(worker_id: int) -> None:
    """A loader worker ignores SIGTERM: a scheduler that stops the run signals the whole
    process group (systemd, Slurm), and the training process stops at a safe point and
    ends its workers itself; a worker killed first would fail the run instead."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # started with it held back: a pending one is now discarded
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


class SegmentationDataModule(L.LightningDataModule):
    """Loaders over given datasets: segmentation samples or classification ones (an int
    ``label``; ``data.collate`` batches either). ``batch_size`` is the global batch of one
    optimiser step: each process loads ``batch_size / (world size × accumulate_grad_batches)``."""

    def __init__(self, train: Dataset, val: Dataset | None = None, batch_size: int = 16, val_batch_size: int = 1,
                 num_workers: int = 4, seed: int = 0) -> None:
        super().__init__()
        self.train, self.val = train, val
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers, self.seed = num_workers, seed

    @classmethod
    def from_config(cls, data: dict[str, Any], seed: int = 0, num_classes: int | None = None) -> SegmentationDataModule:
        """Datasets from the data layer, as the ``data`` section of an experiment config says."""
        def dataset(split: str, transforms: dict[str, Any]):
            transforms = dict(transforms)
            pipeline = build_transforms(transforms.pop("name"), **transforms)
            return build_dataset(data["format"], data["root"], split, transforms=pipeline, num_classes=num_classes,
                                 skip_bad=data["skip_bad"], **data["options"])

        val = dataset(data["val_split"], data["val_transforms"]) if data["val_split"] else None
        return cls(dataset(data["train_split"], data["train_transforms"]), val, data["batch_size"],
                   data["val_batch_size"], data["num_workers"], seed)

    def _loader_args(self, batch_size: int) -> dict[str, Any]:
        return {"batch_size": batch_size, "num_workers": self.num_workers, "collate_fn": collate,
                "pin_memory": torch.cuda.is_available(), "worker_init_fn": _ignore_sigterm}

    def per_device_batch_size(self) -> int:
        share = self.trainer.world_size * self.trainer.accumulate_grad_batches if self.trainer else 1
        if self.batch_size % share:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by world size × accumulate_grad_batches"
                             f" = {share}")
        return self.batch_size // share

    def train_dataloader(self) -> ResumableLoader:
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        sampler = EpochSampler(len(self.train), self.seed, world, rank,
                               sample_seeds=isinstance(self.train, BaseDataset))
        return ResumableLoader(self.train, sampler, drop_last=True, **self._loader_args(self.per_device_batch_size()))

    def val_dataloader(self) -> DataLoader | list:
        if self.val is None:
            return []
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        shard = range(rank, len(self.val), world)
        return WorkerSafeLoader(self.val, sampler=shard, **self._loader_args(self.val_batch_size))
