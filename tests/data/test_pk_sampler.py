"""P x K batches: composition, determinism per (seed, epoch), coverage, short identities and errors."""
from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ninshiki.data.pk_sampler import PKSampler


def _labels(seed: int = 0) -> np.ndarray:
    """30 identities with 2-12 images each, shuffled, plus 5 identities with a single image."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(rng.integers(2, 13), i) for i in range(30)] + [np.arange(100, 105)])
    return rng.permutation(labels)


def test_every_batch_has_p_distinct_identities_k_times_each() -> None:
    labels = _labels()
    sampler = PKSampler(labels, p=8, k=4, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 1
    for batch in batches:
        counts = Counter(labels[batch].tolist())
        assert len(batch) == 32 and len(counts) == 8 and set(counts.values()) == {4}
        assert not counts.keys() & set(range(100, 105))                 # single-image identities never drawn


def test_identities_with_k_or_more_images_are_drawn_without_replacement() -> None:
    labels = _labels()
    sizes = Counter(labels.tolist())
    for batch in PKSampler(labels, p=8, k=4, seed=2):
        for identity in set(labels[batch].tolist()):
            items = [i for i in batch if labels[i] == identity]
            assert len(set(items)) == min(4, sizes[identity])         # fewer than K: with replacement


def test_batches_are_deterministic_per_seed_and_epoch() -> None:
    labels = _labels()
    a, b = PKSampler(labels, p=4, k=3, seed=5), PKSampler(labels, p=4, k=3, seed=5)
    assert list(a) == list(b) and list(a) == list(a)
    a.set_epoch(1)
    epoch1 = list(a)
    assert epoch1 != list(b)
    b.set_epoch(1)
    assert epoch1 == list(b)
    assert list(PKSampler(labels, p=4, k=3, seed=6)) != list(PKSampler(labels, p=4, k=3, seed=5))


def test_identities_are_drawn_in_rounds() -> None:
    # 10 identities of very unequal sizes, P = 3: 100 batches use exactly 30 permutations of the identities.
    labels = np.repeat(np.arange(10), [2, 3, 50, 4, 100, 2, 6, 7, 8, 9])
    sampler = PKSampler(labels, p=3, k=2, seed=0, batches_per_epoch=100)
    per_identity = Counter(int(labels[i]) for batch in sampler for i in batch[::2])   # one item per slot
    assert per_identity == {identity: 30 for identity in range(10)}


def test_length_and_a_data_loader_over_the_sampler() -> None:
    labels = np.repeat(np.arange(6), 20)                                 # 120 images
    sampler = PKSampler(torch.as_tensor(labels), p=3, k=4, seed=0)
    assert len(sampler) == 10 and sampler.num_identities == 6
    assert len(PKSampler(labels, p=3, k=4, batches_per_epoch=3)) == 3
    dataset = TensorDataset(torch.arange(120), torch.as_tensor(labels))
    batches = list(DataLoader(dataset, batch_sampler=sampler))
    assert len(batches) == 10
    for items, identities in batches:
        assert torch.equal(identities, torch.as_tensor(labels)[items])
        assert torch.bincount(identities, minlength=6).tolist().count(4) == 3


def test_single_image_identities_are_skipped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ninshiki.data.pk_sampler"):
        sampler = PKSampler(_labels(), p=4, k=2)
    assert sampler.skipped_identities == 5 and sampler.num_identities == 30
    assert "skipped 5 of 35 identities" in caplog.text


def test_fewer_usable_identities_than_p_is_an_error() -> None:
    labels = [0, 0, 1, 1, 2, 3]                                          # 2 usable, 2 with a single image
    with pytest.raises(ValueError, match=r"at least p=3 identities .* have 2 \(of 4 identities, 2 with a single"):
        PKSampler(labels, p=3, k=2)


@pytest.mark.parametrize(("labels", "kwargs", "message"), [
    ([0, 0, 1, 1], {"p": 1, "k": 2}, "p >= 2"),
    ([0, 0, 1, 1], {"p": 2, "k": 1}, "k >= 2"),
    ([0, 0, 1, 1], {"p": 2, "k": 2, "batches_per_epoch": 0}, "batches_per_epoch"),
    ([], {"p": 2, "k": 2}, "non-empty 1-D"),
    ([[0, 0], [1, 1]], {"p": 2, "k": 2}, "non-empty 1-D"),
    ([0.0, 0.0, 1.0, 1.0], {"p": 2, "k": 2}, "integer identities"),
])
def test_bad_arguments_are_errors(labels: list, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PKSampler(labels, **kwargs)
