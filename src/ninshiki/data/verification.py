"""Verification data: identity folders, balanced same / different pairs in LFW-style folds, open-set splits.

Identity folders are the ImageFolder layout, ``root/<identity>/<image>``, one folder per person (or
object). An identity with a single image can be enrolled in a gallery or used as the other side of a
different-identity pair, but it cannot make a same-identity pair.

`make_pairs` draws pairs as LFW's View 2 was drawn (Huang et al., "Labeled Faces in the Wild", 2007): the
identities are dealt into folds that share nobody, and each fold gets n same and n' different pairs from
its own identities, so a threshold chosen on nine folds is tested on people it has never seen.
`split_identities` does the same for training: a classification data set's classes become disjoint
training and test identities (open-set verification).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from ninshiki.data.formats.imagefolder import scan_image_folder
from ninshiki.data.formats.pairs import PairsSet


@dataclass(frozen=True, eq=False)  # arrays inside: compare fields explicitly
class IdentitySet:
    """The images of identity folders, classes sorted by name and files sorted within each.

    Shape:
        - labels: (N,) int64, indices into `identities`.
    """

    root: Path
    paths: tuple[Path, ...]
    labels: np.ndarray
    identities: tuple[str, ...]

    @property
    def counts(self) -> np.ndarray:
        """(K,) int64 images per identity."""
        return np.bincount(self.labels, minlength=len(self.identities))

    @property
    def single_image(self) -> list[str]:
        """The identities with one image: usable in a gallery, never in a same-identity pair."""
        return [name for name, count in zip(self.identities, self.counts) if count == 1]

    def describe(self) -> str:
        """One line for logs, e.g. ``"12 identities, 80 images; 3 with a single image (...)"``."""
        text = f"{self.root}: {len(self.identities)} identities, {len(self.paths)} images"
        single = self.single_image
        if single:
            text += (f"; {len(single)} with a single image (usable in a gallery and in different-identity pairs, "
                     f"not in same-identity pairs)")
        return text


def scan_identities(root: str | os.PathLike[str]) -> IdentitySet:
    """List identity folders ``root/<identity>/<image>``.

    Raises:
        FileNotFoundError: `root` does not exist.
        ValueError: no identity folders, or identity folders without images (all are named).
    """
    listing = scan_image_folder(root)
    return IdentitySet(Path(root), tuple(listing.paths), np.asarray(listing.labels, dtype=np.int64),
                       tuple(listing.classes))


@dataclass(frozen=True, eq=False)  # arrays inside: compare fields explicitly
class IndexPairs:
    """Pairs of items of a labelled set, by index.

    Shape:
        - a, b: (P,) int64 item indices.
        - same: (P,) bool, same identity.
        - fold: (P,) int64, 0-based.
    """

    a: np.ndarray
    b: np.ndarray
    same: np.ndarray
    fold: np.ndarray

    def __len__(self) -> int:
        return len(self.same)

    def to_pairs_set(self, paths: list[Path] | tuple[Path, ...]) -> PairsSet:
        """The same pairs naming files: item i is ``paths[i]``."""
        return PairsSet(tuple(paths[i] for i in self.a), tuple(paths[i] for i in self.b), self.same, self.fold)


def _deal(counts: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """(K,) fold of each identity: largest first, in snake order, so folds get near-equal identity counts,
    near-equal numbers of identities able to make same pairs, and similar image counts."""
    order = rng.permutation(len(counts))
    order = order[np.argsort(-counts[order], kind="stable")]  # random among equal counts
    snake = np.concatenate([np.arange(folds), np.arange(folds)[::-1]])
    fold_of = np.empty(len(counts), dtype=np.int64)
    fold_of[order] = snake[np.arange(len(counts)) % (2 * folds)]
    return fold_of


def _quotas(capacity: np.ndarray, need: int, rng: np.random.Generator) -> np.ndarray:
    """Spread `need` same pairs over identities as evenly as their capacities allow (water filling)."""
    quota = np.zeros_like(capacity)
    while need > 0:
        active = np.flatnonzero(quota < capacity)
        share = need // len(active)
        if share == 0:
            quota[rng.choice(active, need, replace=False)] += 1
            break
        add = np.minimum(share, capacity[active] - quota[active])
        quota[active] += add
        need -= int(add.sum())
    return quota


def _same_pairs(members: list[np.ndarray], need: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`need` distinct same-identity pairs, spread evenly over the identities (not uniform over pairs,
    which an identity with hundreds of images would dominate quadratically)."""
    sizes = np.array([len(m) for m in members], dtype=np.int64)
    quota = _quotas(sizes * (sizes - 1) // 2, need, rng)
    a, b = [], []
    for items, q in zip(members, quota):
        if q == 0:
            continue
        k = rng.choice(len(items) * (len(items) - 1) // 2, int(q), replace=False)  # pair ids, decoded below
        j = np.floor((1 + np.sqrt(1 + 8 * k.astype(np.float64))) / 2).astype(np.int64)  # pairs (i < j), by j
        j -= j * (j - 1) // 2 > k              # exact integer fix of the float square root
        j += j * (j + 1) // 2 <= k
        a.append(items[k - j * (j - 1) // 2])
        b.append(items[j])
    return np.concatenate(a), np.concatenate(b)


def _diff_pairs(members: list[np.ndarray], need: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`need` distinct different-identity pairs, uniform over all such pairs of images."""
    sizes = np.array([len(m) for m in members], dtype=np.int64)
    flat = np.concatenate(members)                              # (N,) grouped by identity
    after = np.cumsum(sizes[::-1])[::-1] - sizes                # images of the identities after each one
    row = np.cumsum(sizes * after)                              # pair ids of identity i end at row[i]
    k = rng.choice(int(row[-1]), need, replace=False)
    i = np.searchsorted(row, k, side="right")                   # identity of the first image
    r = k - (row[i] - sizes[i] * after[i])
    start = np.cumsum(sizes) - sizes
    return flat[start[i] + r // after[i]], flat[start[i] + sizes[i] + r % after[i]]


def _group_pairs(members: list[np.ndarray], n_same: int, n_diff: int, rng: np.random.Generator,
                 where: str) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.array([len(m) for m in members], dtype=np.int64)
    same_capacity = int((sizes * (sizes - 1) // 2).sum())
    diff_capacity = int((sizes.sum() ** 2 - (sizes ** 2).sum()) // 2)
    if same_capacity < n_same or diff_capacity < n_diff:
        raise ValueError(f"{where}: {len(sizes)} identities ({int((sizes == 1).sum())} with a single image, which "
                         f"cannot make same pairs) allow {same_capacity} distinct same and {diff_capacity} different "
                         f"pairs; {n_same} and {n_diff} were asked (fewer folds, fewer pairs, or disjoint=False)")
    same = _same_pairs(members, n_same, rng) if n_same else (np.empty(0, np.int64),) * 2
    diff = _diff_pairs(members, n_diff, rng) if n_diff else (np.empty(0, np.int64),) * 2
    return np.concatenate([same[0], diff[0]]), np.concatenate([same[1], diff[1]])


def make_pairs(labels: ArrayLike, *, n_same: int, n_diff: int, folds: int = 10, seed: int = 0,
               disjoint: bool = True) -> IndexPairs:
    """Draw distinct same and different pairs of a labelled set in balanced folds, as LFW's View 2.

    Every fold holds exactly `n_same` same-identity pairs, then `n_diff` different-identity pairs, and no
    pair appears twice. Same pairs are spread evenly over a fold's identities; different pairs are uniform
    over its pairs of images of different identities.

    Args:
        labels: the identity of each item (ints or strings).
        n_same: same-identity pairs per fold.
        n_diff: different-identity pairs per fold.
        folds: number of folds.
        seed: the same arguments always give the same pairs.
        disjoint: deal identities into folds first, so that no identity appears in two folds (LFW's
            protocol); False draws from all identities at once (for a set with fewer identities than folds).

    Raises:
        ValueError: too few identities or images for the pairs asked; the message says what limits them.
    """
    codes = np.unique(np.asarray(labels).reshape(-1), return_inverse=True)[1].reshape(-1)  # (N,) 0..K-1
    if n_same < 0 or n_diff < 0 or n_same + n_diff == 0 or folds < 1:
        raise ValueError(f"need folds >= 1 and n_same, n_diff >= 0, not both 0; got folds={folds}, "
                         f"n_same={n_same}, n_diff={n_diff}")
    rng = np.random.default_rng(seed)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    members = np.split(order, np.cumsum(counts)[:-1])
    if disjoint and len(counts) < folds:
        raise ValueError(f"{len(counts)} identities cannot be dealt into {folds} disjoint folds; "
                         "use fewer folds or disjoint=False")
    fold_of = _deal(counts, folds, rng) if disjoint else np.zeros(len(counts), dtype=np.int64)
    parts = []
    for k in range(folds if disjoint else 1):
        group = [members[i] for i in np.flatnonzero(fold_of == k)]
        times = 1 if disjoint else folds
        where = f"fold {k + 1} of {folds}" if disjoint else f"{len(counts)} identities"
        a, b = _group_pairs(group, n_same * times, n_diff * times, rng, where)
        same = np.r_[np.ones(n_same * times, bool), np.zeros(n_diff * times, bool)]
        if disjoint:
            fold = np.full(len(a), k, dtype=np.int64)
        else:  # shuffle each kind, then cut it into equal folds, keeping LFW's same-then-different order
            fold = np.r_[rng.permutation(np.arange(n_same * folds) // n_same) if n_same else [],
                         rng.permutation(np.arange(n_diff * folds) // n_diff) if n_diff else []].astype(np.int64)
        parts.append((a, b, same, fold))
    a, b, same, fold = (np.concatenate(x) for x in zip(*parts))
    order = np.lexsort((~same, fold))  # by fold, same pairs first
    return IndexPairs(a[order], b[order], same[order], fold[order])


def make_folder_pairs(identities: IdentitySet | str | os.PathLike[str], *, n_same: int = 300, n_diff: int = 300,
                      folds: int = 10, seed: int = 0, disjoint: bool = True) -> PairsSet:
    """`make_pairs` over identity folders (a scanned `IdentitySet` or its root); write with `write_pairs`."""
    if not isinstance(identities, IdentitySet):
        identities = scan_identities(identities)
    try:
        pairs = make_pairs(identities.labels, n_same=n_same, n_diff=n_diff, folds=folds, seed=seed, disjoint=disjoint)
    except ValueError as err:
        raise ValueError(f"{identities.describe()}: {err}") from None
    return pairs.to_pairs_set(identities.paths)


def split_identities(labels: ArrayLike, *, test_classes: ArrayLike | None = None, fraction: float | None = None,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split a labelled set by class into training and test identities (open set: no test class is trained on).

    Args:
        labels: the class of each item.
        test_classes: the classes held out for testing; or
        fraction: the fraction of the classes (rounded, at least one, leaving at least one) drawn at random.
        seed: for `fraction`.

    Returns:
        (train_idx, test_idx): sorted item indices, int64, together covering every item once.
    """
    labels = np.asarray(labels).reshape(-1)
    classes = np.unique(labels)
    if (test_classes is None) == (fraction is None):
        raise ValueError("give exactly one of test_classes and fraction")
    if test_classes is not None:
        test = np.unique(np.asarray(test_classes).reshape(-1))
        unknown = test[~np.isin(test, classes)]
        if len(unknown):
            raise ValueError(f"test classes not in the labels: {', '.join(map(str, unknown.tolist()))}")
    else:
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        n_test = min(max(round(fraction * len(classes)), 1), len(classes) - 1)
        test = np.random.default_rng(seed).choice(classes, n_test, replace=False)
    if len(classes) < 2 or len(test) in (0, len(classes)):
        raise ValueError(f"an open-set split needs training and test classes; got {len(classes)} classes, "
                         f"{len(test)} for testing")
    held_out = np.isin(labels, test)
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)
