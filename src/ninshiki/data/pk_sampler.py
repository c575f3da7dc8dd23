"""P x K batches for metric learning: P identities, K images of each (Hermans, Beyer and Leibe, "In Defense
of the Triplet Loss for Person Re-Identification", 2017), so that every anchor has positives and negatives in
its batch.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


class PKSampler(Sampler[list[int]]):
    """A batch sampler yielding lists of P x K dataset indices: K images of each of P distinct identities.

    Identities are drawn in rounds: a random permutation of all of them is used up P at a time before the
    next one starts (a batch never repeats an identity across the seam), so over an epoch every identity
    appears about equally often, however unequal their image counts. The K images of an identity are drawn
    without replacement when it has at least K; an identity with fewer (but at least 2) images is sampled
    WITH replacement, so it repeats some images within the batch rather than being dropped, as person
    re-identification and face datasets have many such identities. Identities with a single image cannot
    give a positive pair and are skipped; `skipped_identities` counts them (and a message is logged).

    Batches depend only on (seed, epoch): call `set_epoch` at the start of every epoch, as with
    `DistributedSampler`, or every epoch repeats the same batches. Indices in a batch are grouped identity
    by identity.

    Args:
        labels: The identity of every dataset item, integers.
        p: Identities per batch (at least 2: negatives come from the other identities).
        k: Images per identity (at least 2: positives come from the same identity).
        seed: Seed of the per-epoch random generator.
        batches_per_epoch: Batches an epoch yields; by default as many as the usable images fill,
            usable images // (p k), at least 1.

    Shape:
        - labels: (N,).
        - Each batch: a list of p * k ints in [0, N).
    """

    def __init__(self, labels: Sequence[int] | np.ndarray | torch.Tensor, *, p: int, k: int, seed: int = 0,
                 batches_per_epoch: int | None = None) -> None:
        if p < 2 or k < 2:
            raise ValueError(f"P x K batches need p >= 2 identities and k >= 2 images each; got p={p}, k={k}")
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch must be >= 1; got {batches_per_epoch}")
        array = _as_labels(labels)
        _, inverse, counts = np.unique(array, return_inverse=True, return_counts=True)
        order = np.argsort(inverse, kind="stable")                       # (N,) items grouped by identity
        members = np.split(order, np.cumsum(counts)[:-1])
        self.members = [m for m in members if len(m) >= 2]               # usable identities' item indices
        self.skipped_identities = len(members) - len(self.members)
        if self.skipped_identities:
            logger.info("PKSampler: skipped %d of %d identities with a single image", self.skipped_identities,
                        len(members))
        if len(self.members) < p:
            raise ValueError(f"P x K batches need at least p={p} identities with 2 or more images; the labels "
                             f"have {len(self.members)} (of {len(members)} identities, {self.skipped_identities} "
                             f"with a single image)")
        self.p, self.k, self.seed = p, k, seed
        usable_images = sum(len(m) for m in self.members)
        self.batches_per_epoch = batches_per_epoch or max(1, usable_images // (p * k))
        self.epoch = 0

    @property
    def num_identities(self) -> int:
        """Identities that batches are drawn from (those with 2 or more images)."""
        return len(self.members)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        for identities in _identity_groups(rng, len(self.members), self.p, self.batches_per_epoch):
            batch = [self._draw(rng, self.members[i]) for i in identities]
            yield np.concatenate(batch).tolist()

    def _draw(self, rng: np.random.Generator, items: np.ndarray) -> np.ndarray:
        # Fewer than K images: with replacement (see the class docstring).
        return rng.choice(items, size=self.k, replace=len(items) < self.k)  # (k,)


def _identity_groups(rng: np.random.Generator, n: int, p: int, count: int) -> Iterator[np.ndarray]:
    """`count` groups of p distinct identities in [0, n), from consecutive random permutations of them."""
    queue = np.empty(0, dtype=np.int64)
    for _ in range(count):
        if len(queue) < p:
            fresh = rng.permutation(n)                                   # (n,)
            pending = np.isin(fresh, queue)
            # identities still queued from the last round go to the back, so this group has none twice
            queue = np.concatenate([queue, fresh[~pending], fresh[pending]])
        group, queue = queue[:p], queue[p:]
        yield group


def _as_labels(labels: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence of identities; got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integer identities; got dtype {array.dtype}")
    return array
