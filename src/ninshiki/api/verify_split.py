"""The identities of `ninshiki verify train`, split three ways: training, validation and test, disjoint.

The test identities (`--test-classes` / `--test-fraction`, resolved as `verify val` resolves them) are only
excluded: `verify train` never reads their images, so neither training nor the choice of best.safetensors
sees them. The validation identities are training identities held out (`--val-classes`, or `--val-fraction`
of the others drawn with `--seed`); the per-epoch verification metrics on their pairs pick best.safetensors.
A source with its own test split (Fashion-MNIST's official test set, ``train/`` + ``test/`` folders) takes
both its training and validation identities from its training split.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ninshiki.api.verify_eval import EvalSide, choose_test_identities, labels_of, resolve_classes, take

MIN_VAL_POOL = 4     # training identities needed to draw validation ones (2 to validate on, 2 to train on)


@dataclass
class TrainData:
    """The training side of an open-set split.

    Shape:
        - labels of `train` and `val.split` index `classes` (the training split's classes).
    """
    classes: list[str]
    train: Dataset                       # the training identities' images
    val: EvalSide | None                 # the validation identities' images; None without validation
    train_identities: list[str]
    val_identities: list[str]
    test_identities: list[str]
    channels: int
    image_size: tuple[int, int]
    skipped: list[str]


def draw_validation(candidates: list[str], fraction: float, seed: int) -> list[str]:
    """A seeded random `fraction` of `candidates` (rounded; at least two, leaving at least two), in their order.

    Fewer than four candidates, or a zero fraction, give none: validation pairs need two identities and the
    P x K batches two more.
    """
    if fraction <= 0.0 or len(candidates) < MIN_VAL_POOL:
        return []
    count = min(max(round(fraction * len(candidates)), 2), len(candidates) - 2)
    picks = np.random.default_rng([seed, 1]).choice(len(candidates), count, replace=False)  # not the test draw's
    return [candidates[i] for i in np.sort(picks)]


def choose_val_identities(classes: list[str], candidates: list[str], test: list[str], *, val_classes: str | None,
                          val_fraction: float, seed: int) -> list[str]:
    """The validation identities among `candidates` (the training identities, in `classes` order).

    Raises:
        ValueError: `val_classes` names a test identity (the clash is named) or an unknown class, fewer than
            two identities, or leaves fewer than two training identities.
    """
    if not val_classes:
        return draw_validation(candidates, val_fraction, seed)
    tokens = [t.strip() for t in val_classes.split(",") if t.strip()]
    named_tests = [t for t in tokens if t in test and t not in classes]   # the test folder's own people
    names = [n for n in tokens if n not in named_tests]
    names = resolve_classes(",".join(names), classes, what="val_classes") if names else []
    clash = named_tests + [n for n in names if n in test]
    if clash:
        raise ValueError(f"val_classes: {', '.join(clash)} {'is' if len(clash) == 1 else 'are'} held out for "
                         f"testing; validation identities must be training identities ({_listed(candidates)})")
    if len(names) < 2:
        raise ValueError(f"val_classes: validation pairs need at least two identities, got {len(names)}")
    if len(candidates) - len(names) < 2:
        raise ValueError(f"val_classes: {len(names)} of the {len(candidates)} training identities leave fewer "
                         "than two to train on")
    return names


def load_train_data(source: str, *, test_classes: str | None, test_fraction: float | None, val_classes: str | None,
                    val_fraction: float, seed: int = 0, data_root: str | None = None,
                    image_size: int | tuple[int, int] | None = None, channels: int | None = None,
                    strict: bool = False, memory_limit_mb: int = 2048) -> TrainData:
    """Load the training and validation identities' images of a classification source (see the module
    docstring); the test identities are resolved, by name, only to be left out."""
    from ninshiki.data.datasets import load_classification_data

    what, test_folder = _training_source(source)
    data = load_classification_data(what, data_root=data_root, val_split=0.0, image_size=image_size,
                                    channels=channels, seed=seed, strict=strict, memory_limit_mb=memory_limit_mb)
    classes = list(data.classes)
    test = choose_test_identities(test_folder or classes, test_classes=test_classes, test_fraction=test_fraction,
                                  seed=seed, all_by_default=test_folder is not None)
    candidates = [c for c in classes if c not in test]
    if not candidates:
        raise ValueError(f"{source}: every identity is held out for testing; leave some for training")
    val = choose_val_identities(classes, candidates, test, val_classes=val_classes, val_fraction=val_fraction,
                                seed=seed)
    if val_fraction > 0 and not val_classes and len(candidates) < MIN_VAL_POOL:
        print(f"{len(candidates)} training identities are too few to hold validation identities out of (it takes "
              f"{MIN_VAL_POOL}): no validation, best.safetensors = last", file=sys.stderr)
    trained = [c for c in candidates if c not in val]
    labels = labels_of(data.train)                                                       # (N,)
    train = take(data.train, np.flatnonzero(np.isin(labels, _codes(trained, classes))))
    side = None
    if val:
        index = np.flatnonzero(np.isin(labels, _codes(val, classes)))                    # (M,)
        split = take(data.train, index)
        where = f"the training split of {source}" if data.val is not None else data.source or source
        side = EvalSide(split, labels_of(split), classes, getattr(split, "paths", None), data.train, index, where)
    return TrainData(classes, train, side, trained, val, test, data.channels, data.image_size, list(data.skipped))


def describe_identities(data: TrainData) -> str:
    """One line for the log, e.g. ``"identities: 5 train (0, 1, 2, 4, 6), 2 val (3, 5), 3 test (7, 8, 9)"``."""
    parts = [f"{len(names)} {kind}{f' ({_listed(names)})' if names else ''}"
             for kind, names in (("train", data.train_identities), ("val", data.val_identities),
                                 ("test", data.test_identities))]
    return "identities: " + ", ".join(parts)


def _listed(names: list[str], most: int = 12) -> str:
    return ", ".join(names[:most]) + (f", ... ({len(names) - most} more)" if len(names) > most else "")


def _codes(names: list[str], classes: list[str]) -> np.ndarray:
    return np.array([classes.index(name) for name in names], dtype=np.int64)          # (len(names),)


def _training_source(source: str) -> tuple[str, list[str] | None]:
    """(what to load, the test folder's identities): a source with ``train/`` and ``val/`` (or ``test/``)
    folders loads its train folder only; the test folder's identities are returned when they are other
    people than the train folder's (its folders are listed, never read)."""
    from ninshiki.data.files import find_split_folders
    from ninshiki.data.formats.imagefolder import class_folders

    path = Path(source).expanduser()
    layout = find_split_folders(path) if path.is_dir() else None
    if layout is None:
        return source, None
    test_names = [p.name for p in class_folders(layout[1])]
    shared = {p.name for p in class_folders(layout[0])} & set(test_names)
    return str(layout[0]), (None if shared else test_names)
