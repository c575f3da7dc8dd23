"""Training and evaluation passes of embedding networks (verification). Nothing here writes files.

Training draws P x K batches (`PKSampler`: P identities, K images each), so that every anchor has positives
and negatives in its batch, and calls the model's own `loss` (triplet with its miner, or contrastive).
Evaluation embeds each image once, then scores pairs of rows and ranks gallery identities for probes.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ninshiki.data.pk_sampler import PKSampler
from ninshiki.data.splits import InMemorySplit, Unreadable
from ninshiki.data.verification import IndexPairs
from ninshiki.engine.batches import Batch, MemoryBatches, Normalizer, StreamBatches
from ninshiki.engine.loop import CHECK_EVERY, check_finite, optimizer_step
from ninshiki.engine.runtime import Runtime
from ninshiki.metrics.verification import identification_accuracy, pair_scores


@dataclass
class VerifyStepContext:
    """What an embedding training step needs besides the batch."""
    model: nn.Module                       # what the step calls: maybe compiled
    bare: nn.Module                        # its `loss(embeddings, labels)`
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    normalizer: Normalizer
    runtime: Runtime
    clip_grad: float | None = None
    augment: Callable[[Tensor], Tensor] | None = None
    ema: None = None                       # `optimizer_step` reads it; embeddings train without an EMA


def pk_batches(batches: MemoryBatches | StreamBatches, sampler: PKSampler, *, workers: int = 0) -> Iterator[Batch]:
    """The sampler's P x K batches of a split: indexed on the device when in memory, else decoded by workers
    (unreadable files are dropped from their batch and named in `Batch.skipped`)."""
    if isinstance(batches, MemoryBatches):
        device = batches.images.device
        for ids in sampler:
            index = torch.tensor(ids, dtype=torch.int64, device=device)     # (P K,)
            yield Batch(batches.images[index], batches.labels[index])
        return
    from ninshiki.data.splits import collate_skipping

    runtime = batches.runtime
    loader = DataLoader(batches.dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_skipping,
                        pin_memory=runtime.device.type == "cuda")
    for images, labels, skipped in loader:
        yield Batch(images.to(runtime.device, non_blocking=True), labels.to(runtime.device, non_blocking=True),
                    list(skipped))


def train_step(ctx: VerifyStepContext, batch: Batch) -> dict[str, Tensor]:
    """One optimizer step on a P x K batch; returns the loss and its statistics, detached."""
    images = batch.images if ctx.augment is None else ctx.augment(batch.images)
    inputs = ctx.normalizer(images, channels_last=ctx.runtime.channels_last)
    with ctx.runtime.autocast():
        embeddings = ctx.model(inputs)                                   # (B, D)
    losses = ctx.bare.loss(embeddings.float(), batch.labels)             # distances in float32
    optimizer_step(ctx, losses["loss"], ema_source=ctx.bare)
    return {name: value.detach().float() for name, value in losses.items()}


def _means(sums: dict[str, Tensor], counts: dict[str, Tensor]) -> dict[str, float]:
    return {name: float(sums[name] / counts[name]) for name in sums if float(counts[name]) > 0}


def _postfix(means: dict[str, float]) -> dict[str, str]:
    shown = {"loss": "loss", "active_triplets": "active", "active_pairs": "active"}
    return {label: f"{means[key]:.4f}" for key, label in shown.items() if key in means}


def train_one_epoch(ctx: VerifyStepContext, batches: Iterable[Batch], *, epoch: int, global_step: int,
                    progress=None, deadline: float | None = None) -> tuple[dict[str, float], int, list[str], bool]:
    """Train on every batch (or until `deadline`, a `time.perf_counter()` value).

    Returns:
        ({"train_<stat>": mean over steps, "train_images_per_s"}, the global step after the epoch, the
        unreadable files met, whether the deadline stopped it). Statistics that are NaN for a batch
        (no negative pair, say) are left out of that batch's mean.
    """
    ctx.model.train()
    sums: dict[str, Tensor] = {}
    counts: dict[str, Tensor] = {}
    recent: list[Tensor] = []
    seen, skipped, stopped = 0, [], False
    start = time.perf_counter()
    for batch in batches:
        skipped += batch.skipped
        if batch.labels.shape[0] < 2:      # unreadable files left too few images (BatchNorm needs two)
            continue
        losses = train_step(ctx, batch)
        for name, value in losses.items():     # summed on the device: no host sync per step
            finite = torch.isfinite(value)
            sums[name] = sums.get(name, 0.0) + torch.where(finite, value, 0.0)
            counts[name] = counts.get(name, 0) + finite.float()
        recent.append(losses["loss"])
        global_step += 1
        seen += batch.labels.shape[0]
        if len(recent) == CHECK_EVERY:
            check_finite(recent, global_step - len(recent) + 1, epoch)
            recent = []
            if progress is not None:
                progress.set_postfix(_postfix(_means(sums, counts)), refresh=False)
        if progress is not None:
            progress.update(1)
        if deadline is not None and time.perf_counter() >= deadline:
            stopped = True
            break
    if recent:
        check_finite(recent, global_step - len(recent) + 1, epoch)
    row = {f"train_{name}": value for name, value in _means(sums, counts).items()}
    row["train_images_per_s"] = seen / max(time.perf_counter() - start, 1e-9)
    return row, global_step, skipped, stopped


class _Indexed(Dataset):
    """A split whose items are (image, index), so a batch says which items survived decoding."""

    def __init__(self, split: Dataset) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, int] | Unreadable:
        item = self.split[index]
        return item if isinstance(item, Unreadable) else (item[0], index)


@torch.no_grad()
def embed_split(model: nn.Module, split: Dataset, normalizer: Normalizer, runtime: Runtime, *, batch_size: int = 256,
                workers: int = 0, progress: bool = False) -> tuple[Tensor, np.ndarray, list[str]]:
    """Embed every image of a split in evaluation mode (the model's mode is restored afterwards); `progress`
    shows a bar on terminals.

    Returns:
        (embeddings, kept, skipped): float32 CPU embeddings with zero rows for unreadable images, which
        `kept` marks False, and one "path: reason" message per unreadable image.

    Shape:
        - embeddings: (N, D); kept: (N,) bool.
    """
    from tqdm.auto import tqdm

    from ninshiki.data.splits import collate_skipping

    was_training = model.training
    model.eval()
    n = len(split)  # type: ignore[arg-type]
    rows: list[Tensor] = []
    where: list[Tensor] = []
    skipped: list[str] = []
    if isinstance(split, InMemorySplit):
        chunks = ((split.images[i:i + batch_size], torch.arange(i, min(i + batch_size, n)), [])
                  for i in range(0, n, batch_size))
    else:
        chunks = DataLoader(_Indexed(split), batch_size=batch_size, num_workers=workers, collate_fn=collate_skipping)
    try:
        for images, index, bad in tqdm(chunks, total=-(-n // batch_size), desc="embedding", unit="batch",
                                       leave=False, disable=None if progress else True):
            skipped += bad
            if len(index):
                inputs = normalizer(images.to(runtime.device), channels_last=runtime.channels_last)
                with runtime.autocast():
                    rows.append(model(inputs).float().cpu())
                where.append(index)
    finally:
        model.train(was_training)
    dim = rows[0].shape[1] if rows else int(getattr(model, "embedding_dim", 0))
    embeddings = torch.zeros(n, dim)                                     # (N, D)
    kept = np.zeros(n, dtype=bool)                                       # (N,)
    if rows:
        index = torch.cat(where)
        embeddings[index] = torch.cat(rows)
        kept[index.numpy()] = True
    return embeddings, kept, skipped


def score_pairs(embeddings: Tensor | np.ndarray, pairs: IndexPairs, *, kept: np.ndarray | None = None,
                metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """Scores of the pairs whose two images were embedded (similarities: higher is more alike).

    Returns:
        (scores, used): scores of the pairs `used` marks, in order.

    Shape:
        - embeddings: (N, D); pairs index its rows; kept: (N,) bool or None (all).
        - scores: (U,) float64; used: (P,) bool with U true entries.
    """
    used = np.ones(len(pairs), dtype=bool) if kept is None else kept[pairs.a] & kept[pairs.b]   # (P,)
    e = embeddings.numpy() if isinstance(embeddings, Tensor) else np.asarray(embeddings)
    if not used.any():
        return np.empty(0), used
    return pair_scores(e[pairs.a[used]], e[pairs.b[used]], metric=metric), used      # type: ignore[arg-type]


def gallery_probes(labels: np.ndarray, per_identity: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Closed-set identification split: the first `per_identity` images of each identity (in the given order)
    form the gallery, all the others are probes; an identity with no more images than that is in the gallery
    only (a distractor for the others' probes).

    Shape:
        - labels: (N,); outputs: sorted int64 indices, together covering every item once.
    """
    labels = np.asarray(labels).reshape(-1)
    order = np.argsort(labels, kind="stable")                           # (N,) grouped, original order kept
    _, starts = np.unique(labels[order], return_index=True)
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))   # (N,) rank in identity
    in_gallery = np.zeros(len(labels), dtype=bool)
    in_gallery[order[rank < per_identity]] = True
    return np.flatnonzero(in_gallery), np.flatnonzero(~in_gallery)


def rank_metrics(embeddings: Tensor | np.ndarray, labels: np.ndarray, *, kept: np.ndarray | None = None,
                 per_identity: int = 1, metric: str = "cosine", ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Rank-k identification accuracy (see `gallery_probes` and `identification_accuracy`): rank1, and rank5
    when there are at least five identities; {} without two identities or without probes.

    Shape:
        - embeddings: (N, D); labels: (N,); kept: (N,) bool or None (all).
    """
    e = embeddings.numpy() if isinstance(embeddings, Tensor) else np.asarray(embeddings)
    labels = np.asarray(labels).reshape(-1)
    if kept is not None:
        e, labels = e[kept], labels[kept]
    gallery, probes = gallery_probes(labels, per_identity)
    if len(np.unique(labels)) < 2 or not len(probes):
        return {}
    return identification_accuracy(e[gallery], labels[gallery], e[probes], labels[probes], ks=ks,
                                   metric=metric)  # type: ignore[arg-type]
