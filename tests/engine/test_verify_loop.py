"""The embedding training and evaluation passes: P x K batches from memory and from files, learning, the
deadline, embedding with unreadable files, pair scores, and the gallery / probe split of rank-k identification."""
import time

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from ninshiki.data.pk_sampler import PKSampler
from ninshiki.data.splits import FileSplit, InMemorySplit
from ninshiki.data.verification import IndexPairs, make_pairs
from ninshiki.engine.batches import Normalizer, make_batches
from ninshiki.engine.optim import make_optimizer, make_scheduler
from ninshiki.engine.runtime import make_runtime
from ninshiki.engine.verify_loop import (
    VerifyStepContext,
    embed_split,
    gallery_probes,
    pk_batches,
    rank_metrics,
    score_pairs,
    train_one_epoch,
)
from ninshiki.metrics.verification import auc
from ninshiki.models.verify import embed
from ninshiki.models.verify.embedding import triplet_resnet20

RUNTIME = make_runtime(device="cpu", amp="off", channels_last="off")


def _digits(classes, per_class: int, offset: int = 0) -> InMemorySplit:
    digits = load_digits()
    index = np.concatenate([np.flatnonzero(digits.target == c)[offset:offset + per_class] for c in classes])
    images = torch.from_numpy(np.rint(digits.images[index] * 255 / 16).astype(np.uint8))[:, None]   # (N, 1, 8, 8)
    return InMemorySplit(images, torch.from_numpy(digits.target[index]))


def _as_files(split: InMemorySplit, folder) -> FileSplit:
    paths = []
    for i, image in enumerate(split.images):
        paths.append(folder / f"{i:03d}.png")
        Image.fromarray(image[0].numpy()).save(paths[-1])
    return FileSplit([str(p) for p in paths], split.labels.tolist(), (8, 8), channels=1)


def _context(model, normalizer: Normalizer, lr: float = 3e-3) -> VerifyStepContext:
    optimizer = make_optimizer(model, name="adamw", lr=lr, weight_decay=0.0)
    return VerifyStepContext(model=model, bare=model, optimizer=optimizer,
                             scheduler=make_scheduler(optimizer, lambda step: 1.0), normalizer=normalizer,
                             runtime=RUNTIME)


def test_memory_and_file_batches_are_the_same_pk_batches(tmp_path) -> None:
    split = _digits([0, 1, 2, 3], per_class=5)
    files = _as_files(split, tmp_path)
    sampler = PKSampler(split.labels, p=2, k=3, seed=5, batches_per_epoch=4)
    memory = list(pk_batches(make_batches(split, RUNTIME), sampler))
    stream = list(pk_batches(make_batches(files, RUNTIME, workers=0), sampler))
    assert len(memory) == len(stream) == 4
    for a, b, ids in zip(memory, stream, sampler):
        assert a.images.shape == (6, 1, 8, 8) and torch.equal(a.images, b.images)
        assert torch.equal(a.labels, b.labels) and torch.equal(a.labels, split.labels[ids])
        assert len(set(a.labels.tolist())) == 2 and (torch.bincount(a.labels) % 3 == 0).all()   # 2 ids x 3


def test_file_batches_name_and_drop_unreadable_images(tmp_path) -> None:
    split = _digits([0, 1], per_class=3)
    files = _as_files(split, tmp_path)
    files.paths[0] = str(tmp_path / "broken.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    sampler = PKSampler(split.labels, p=2, k=3, seed=0, batches_per_epoch=1)    # every image, once
    (batch,) = pk_batches(make_batches(files, RUNTIME, workers=0), sampler)
    assert batch.images.shape[0] == 5 and len(batch.skipped) == 1 and "broken.png" in batch.skipped[0]


def test_a_few_steps_learn_an_embedding() -> None:
    torch.manual_seed(0)
    train, held = _digits([0, 1, 2], per_class=30), _digits([0, 1, 2], per_class=20, offset=30)
    model = triplet_resnet20(in_channels=1, embedding_dim=16)
    normalizer = Normalizer.fit(train.images)
    pairs = make_pairs(held.labels.numpy(), n_same=40, n_diff=40, folds=2, seed=0, disjoint=False)

    def held_out_auc() -> float:
        e, _, _ = embed_split(model, held, normalizer, RUNTIME)
        scores, _ = score_pairs(e, pairs)
        return auc(scores, pairs.same)

    before = held_out_auc()
    ctx = _context(model, normalizer)
    sampler = PKSampler(train.labels, p=3, k=4, seed=0, batches_per_epoch=30)
    row, step, skipped, stopped = train_one_epoch(ctx, pk_batches(make_batches(train, RUNTIME), sampler), epoch=0,
                                                  global_step=7)
    assert step == 37 and not skipped and not stopped
    assert {"train_loss", "train_active_triplets", "train_mean_pos_dist", "train_images_per_s"} <= set(row)
    assert 0.0 <= row["train_active_triplets"] <= 1.0 and row["train_loss"] >= 0.0
    after = held_out_auc()
    assert after > 0.95 and after > before + 0.1, (before, after)
    assert model.training      # evaluation restores the training mode


def test_the_deadline_stops_the_epoch_after_the_current_step() -> None:
    train = _digits([0, 1], per_class=6)
    model = triplet_resnet20(in_channels=1, embedding_dim=8)
    sampler = PKSampler(train.labels, p=2, k=3, seed=0, batches_per_epoch=50)
    row, step, _, stopped = train_one_epoch(_context(model, Normalizer.fit(train.images)),
                                            pk_batches(make_batches(train, RUNTIME), sampler), epoch=0,
                                            global_step=0, deadline=time.perf_counter())
    assert stopped and step == 1 and np.isfinite(row["train_loss"])


def test_embed_split_matches_embed_and_marks_unreadable_files(tmp_path) -> None:
    split = _digits([3, 4], per_class=7)
    model = triplet_resnet20(in_channels=1, embedding_dim=8)
    normalizer = Normalizer.fit(split.images)
    reference = embed(model, normalizer(split.images))
    e, kept, skipped = embed_split(model, split, normalizer, RUNTIME, batch_size=4)
    assert e.shape == (14, 8) and kept.all() and not skipped
    torch.testing.assert_close(e, reference, rtol=1e-5, atol=1e-6)
    files = _as_files(split, tmp_path)
    (tmp_path / "005.png").write_bytes(b"\x89PNG broken")
    e2, kept2, skipped2 = embed_split(model, files, normalizer, RUNTIME, batch_size=4)
    assert kept2.tolist() == [i != 5 for i in range(14)] and "005.png" in skipped2[0]
    torch.testing.assert_close(e2[kept2], reference[kept2], rtol=1e-5, atol=1e-6)   # PNG is lossless
    assert torch.count_nonzero(e2[5]) == 0


def test_score_pairs_leaves_out_pairs_with_an_unembedded_image() -> None:
    e = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    pairs = IndexPairs(np.array([0, 0, 1, 2]), np.array([1, 3, 2, 3]), np.array([1, 0, 1, 0], bool),
                       np.zeros(4, np.int64))
    scores, used = score_pairs(e, pairs)
    np.testing.assert_allclose(scores, [0.0, -1.0, np.sqrt(0.5), -np.sqrt(0.5)])
    scores, used = score_pairs(e, pairs, kept=np.array([True, True, True, False]))
    assert used.tolist() == [True, False, True, False]
    np.testing.assert_allclose(scores, [0.0, np.sqrt(0.5)])
    np.testing.assert_allclose(score_pairs(e, pairs, metric="l2")[0], [-np.sqrt(2), -2.0, -1.0, -np.sqrt(5)])


def test_gallery_is_the_first_images_of_each_identity() -> None:
    labels = np.array([2, 0, 2, 1, 0, 2, 1, 3])
    gallery, probes = gallery_probes(labels, 1)
    assert gallery.tolist() == [0, 1, 3, 7] and probes.tolist() == [2, 4, 5, 6]
    gallery, probes = gallery_probes(labels, 2)
    assert gallery.tolist() == [0, 1, 2, 3, 4, 6, 7] and probes.tolist() == [5]


def test_rank_metrics() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 3)                                  # 6 identities x 3 images
    centres = np.eye(8)[:6] * 5
    e = centres[labels] + rng.normal(scale=0.3, size=(18, 8))
    assert rank_metrics(e, labels) == {"rank1": 1.0, "rank5": 1.0}
    swapped = e.copy()
    swapped[[1, 4]] = swapped[[4, 1]]                                   # two probes look like the other identity
    assert rank_metrics(swapped, labels)["rank1"] == pytest.approx(10 / 12)
    assert set(rank_metrics(e[labels < 3], labels[labels < 3])) == {"rank1"}    # rank-5 needs 5 identities
    kept = labels != 5
    assert rank_metrics(e, labels, kept=kept) == {"rank1": 1.0, "rank5": 1.0}
    assert rank_metrics(e[labels == 0], labels[labels == 0]) == {}      # one identity: nothing to tell apart
    assert rank_metrics(e[::3], labels[::3]) == {}                      # one image each: no probes
