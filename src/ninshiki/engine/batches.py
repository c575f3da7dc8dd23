"""Batches for the training and evaluation loops.

Small datasets (the ones held in memory as uint8) are moved to the device once and indexed there: no
DataLoader, no per-sample Python, no host-to-device copy per step. Datasets streamed from disk go
through a DataLoader with workers. Both give the same `Batch` and both draw their order from a
generator seeded by (seed, epoch), so a resumed run sees the same batches as an uninterrupted one.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ninshiki.engine.runtime import Runtime


@dataclass
class Batch:
    images: Tensor                    # (B, C, H, W) uint8 on the run's device
    labels: Tensor                    # (B,) int64
    skipped: list[str] = field(default_factory=list)   # unreadable files dropped from this batch


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator that depends only on the run's seed and the epoch."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def shard_order(n: int, *, shuffle: bool, generator: torch.Generator, rank: int, world_size: int,
                pad: bool) -> Tensor:
    """This rank's sample indices for one epoch, like DistributedSampler.

    With `pad`, every rank gets the same count (the order wraps around), so data-parallel ranks take
    the same number of steps.
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if pad and world_size > 1:
        per_rank = -(-n // world_size)
        order = torch.cat([order, order[: per_rank * world_size - n]])
    return order[rank::world_size]


class MemoryBatches:
    """Batches of an in-memory split, indexed on the device."""

    def __init__(self, images: Tensor, labels: Tensor, runtime: Runtime) -> None:
        self.images = images.to(runtime.device)
        self.labels = labels.to(runtime.device)
        self.runtime = runtime

    def __len__(self) -> int:
        return self.images.shape[0]

    def iterate(self, *, batch_size: int, shuffle: bool, generator: torch.Generator,
                drop_last: bool = False) -> Iterator[Batch]:
        order = shard_order(len(self), shuffle=shuffle, generator=generator, rank=self.runtime.rank,
                            world_size=self.runtime.world_size, pad=shuffle).to(self.runtime.device)
        stop = len(order) - batch_size + 1 if drop_last else len(order)
        for start in range(0, max(stop, 0), batch_size):
            index = order[start:start + batch_size]
            yield Batch(self.images[index], self.labels[index])

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        per_rank = -(-len(self) // self.runtime.world_size)
        return per_rank // batch_size if drop_last else -(-per_rank // batch_size)


class StreamBatches:
    """Batches of a split decoded from disk by DataLoader workers; unreadable files are dropped and named."""

    def __init__(self, dataset: Dataset, runtime: Runtime, *, workers: int) -> None:
        self.dataset = dataset
        self.runtime = runtime
        self.workers = workers

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def iterate(self, *, batch_size: int, shuffle: bool, generator: torch.Generator,
                drop_last: bool = False) -> Iterator[Batch]:
        from ninshiki.data.datasets import collate_skipping

        order = shard_order(len(self), shuffle=shuffle, generator=generator, rank=self.runtime.rank,
                            world_size=self.runtime.world_size, pad=shuffle)
        loader = DataLoader(self.dataset, batch_size=batch_size, sampler=order.tolist(), drop_last=drop_last,
                            num_workers=self.workers, collate_fn=collate_skipping,
                            pin_memory=self.runtime.device.type == "cuda", persistent_workers=False)
        for images, labels, skipped in loader:
            yield Batch(images.to(self.runtime.device, non_blocking=True),
                        labels.to(self.runtime.device, non_blocking=True), list(skipped))

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        per_rank = -(-len(self) // self.runtime.world_size)
        return per_rank // batch_size if drop_last else -(-per_rank // batch_size)


def drops_last(batches: MemoryBatches | StreamBatches, batch_size: int) -> bool:
    """Training drops a last partial batch when there is more than one batch: BatchNorm fails on a batch of one."""
    return len(batches) > batch_size


def make_batches(dataset: Dataset, runtime: Runtime, *, workers: int = 2) -> MemoryBatches | StreamBatches:
    from ninshiki.data.datasets import InMemorySplit

    if isinstance(dataset, InMemorySplit):
        return MemoryBatches(dataset.images, dataset.labels, runtime)
    return StreamBatches(dataset, runtime, workers=workers)


@functools.lru_cache(maxsize=16)
def _affine(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[Tensor, Tensor]:
    """(1 / (255 std), mean / std) as (1, C, 1, 1) tensors, made once per device rather than every batch."""
    std_t = torch.tensor(std, dtype=torch.float64)
    scale = (1.0 / (255.0 * std_t)).float().view(1, -1, 1, 1).to(device)
    shift = (torch.tensor(mean, dtype=torch.float64) / std_t).float().view(1, -1, 1, 1).to(device)
    return scale, shift


@dataclass(frozen=True)
class Normalizer:
    """uint8 images -> float model input: scale to [0, 1], subtract the mean, divide by the std."""
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, images: Tensor, *, channels_last: bool = False) -> Tensor:
        scale, shift = _affine(self.mean, self.std, images.device)
        x = torch.addcmul(-shift, images.float(), scale)     # x / (255 std) - mean / std, in one pass
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    @staticmethod
    def fit(images: Tensor, max_samples: int = 10_000) -> Normalizer:
        """Per-channel statistics of (a sample of) uint8 images (N, C, H, W)."""
        sample = images[:max_samples].float() / 255.0
        mean = sample.mean(dim=(0, 2, 3))
        std = sample.std(dim=(0, 2, 3)).clamp(min=1e-3)
        return Normalizer(tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist()))
