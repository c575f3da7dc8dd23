"""`ninshiki verify val`, and the test identities of the open-set split (`verify_split` loads the training side).

Open-set protocol (as LFW's): the test identities are never seen in training. A source with its own split
of the same classes (Fashion-MNIST's official test set, ``train/`` + ``test/`` class folders) trains on the
training split's training identities and tests on the test split's test identities; ``train/`` + ``test/``
folders of different people are used as they are; any other source is split by identity only.

Evaluation pairs come from `--pairs` (LFW's format, the simple ``path_a path_b same [fold]`` list, or the
index list written for built-in arrays) or are drawn as LFW's View 2 was (`make_pairs`: ten folds, seeded)
and written to OUT/pairs.txt. Rank-k identification uses every test image: the first image(s) of each
identity form the gallery and the rest are probes (`gallery_probes`).
"""
from __future__ import annotations

import csv
import io
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import Dataset

from ninshiki.config_verify import VerifyEvalConfig
from ninshiki.data.splits import ConvertedSplit, FileSplit, InMemorySplit
from ninshiki.data.verification import IndexPairs, make_pairs, split_identities
from ninshiki.io import write_json, write_text

if TYPE_CHECKING:
    from ninshiki.api.verify_gallery import Embedder

INDEX_HEADER = "# ninshiki index pairs"   # first line of the pairs files of built-in arrays (no image files)


@dataclass
class EvalSide:
    """The test identities' images, and the whole split they were taken from (index pairs refer to it).

    Shape:
        - labels, source_index: (N,) int64; labels index `classes`, source_index `source`'s items.
    """
    split: Dataset
    labels: np.ndarray
    classes: list[str]
    paths: list[str] | None
    source: Dataset
    source_index: np.ndarray
    description: str                     # "digits", "the test split of fashion-mnist", ...


@dataclass
class VerifyData:
    classes: list[str]
    test: EvalSide | None                # None without test identities
    test_identities: list[str]
    channels: int
    image_size: tuple[int, int]
    skipped: list[str]


def labels_of(split: Dataset) -> np.ndarray:
    """(N,) int64 labels of a classification split."""
    labels = split.labels                                                # type: ignore[attr-defined]
    return labels.cpu().numpy().astype(np.int64) if hasattr(labels, "cpu") else np.asarray(labels, np.int64)


def take(split: Dataset, indices: np.ndarray) -> Dataset:
    """The items of a classification split at `indices` ((M,) int), in that order."""
    if isinstance(split, ConvertedSplit):
        return replace(split, base=split.base.subset(indices))
    if isinstance(split, (InMemorySplit, FileSplit)):
        return split.subset(indices)
    raise TypeError(f"cannot take a subset of a {type(split).__name__}")


def resolve_classes(spec: str, classes: list[str], *, what: str = "test_classes") -> list[str]:
    """``"all"`` or comma-separated class names or indices (a name wins over an index) -> class names.

    `what` names the option in error messages.
    """
    if spec.strip().lower() == "all":
        return list(classes)
    names = []
    for token in (t.strip() for t in spec.split(",") if t.strip()):
        if token in classes:
            names.append(token)
        elif token.isdigit() and int(token) < len(classes):
            names.append(classes[int(token)])
        else:
            shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
            raise ValueError(f"{what}: {token!r} is neither a class name nor an index below {len(classes)} "
                             f"(classes: {shown})")
    if not names:
        raise ValueError(f"{what}: no class given in {spec!r}")
    return sorted(set(names), key=classes.index)


def draw_classes(classes: list[str], fraction: float, seed: int) -> list[str]:
    """A seeded random `fraction` of the classes (at least one, leaving at least one), in class order."""
    _, test = split_identities(np.arange(len(classes)), fraction=fraction, seed=seed)
    return [classes[i] for i in test]


def choose_test_identities(classes: list[str], *, test_classes: str | None, test_fraction: float | None, seed: int,
                           all_by_default: bool = False) -> list[str]:
    """`test_classes` (names, indices or "all") wins over `test_fraction`; neither (or a zero fraction) gives
    none, unless `all_by_default` (a folder of other people than the training folder's)."""
    if test_classes or all_by_default:
        return resolve_classes(test_classes or "all", classes)
    return draw_classes(classes, test_fraction, seed) if test_fraction else []


def _disjoint_folders(source: str) -> tuple[Path, Path] | None:
    """(train, test) folders when `source` has ``train/`` and ``val/`` (or ``test/``) folders of different people."""
    from ninshiki.data.files import find_split_folders
    from ninshiki.data.formats.imagefolder import class_folders

    path = Path(source).expanduser()
    layout = find_split_folders(path) if path.is_dir() else None
    if layout is None or {p.name for p in class_folders(layout[0])} & {p.name for p in class_folders(layout[1])}:
        return None
    return layout[0], layout[1]


def load_verify_data(source: str, *, test_classes: str | None, test_fraction: float | None, seed: int = 0,
                     data_root: str | None = None, image_size: int | tuple[int, int] | None = None,
                     channels: int | None = None, strict: bool = False, memory_limit_mb: int = 2048) -> VerifyData:
    """Load the test identities' images of a classification source (see the module docstring).

    `test_classes` (names, indices or "all") wins over `test_fraction`; neither (or a zero fraction) means
    no test identities. ``train/`` and ``test/`` folders of different people are already split: every test
    identity (or those `test_classes` names) is tested. `verify_split.load_train_data` loads the training side
    of the same split.
    """
    from ninshiki.data.datasets import load_classification_data

    folders = _disjoint_folders(source)
    data = load_classification_data(str(folders[1]) if folders else source, data_root=data_root, val_split=0.0,
                                    image_size=image_size, channels=channels, seed=seed, strict=strict,
                                    memory_limit_mb=memory_limit_mb)
    classes = list(data.classes)
    test = choose_test_identities(classes, test_classes=test_classes, test_fraction=test_fraction, seed=seed,
                                  all_by_default=folders is not None)
    codes = np.array([classes.index(name) for name in test], dtype=np.int64)
    side = None
    if len(test):
        source_split = data.val if data.val is not None else data.train
        index = np.flatnonzero(np.isin(labels_of(source_split), codes))                  # (N,)
        if not len(index):
            raise ValueError(f"{source}: no images of the test identities ({', '.join(test[:5])}...)")
        split = take(source_split, index)
        where = (f"the {'test' if data.val_is_test else 'validation'} split of {source}" if data.val is not None
                 else data.source or source)
        side = EvalSide(split, labels_of(split), classes, getattr(split, "paths", None), source_split, index, where)
    return VerifyData(classes, side, test, data.channels, data.image_size, list(data.skipped))


def generate_pairs(labels: np.ndarray, *, per_fold: int, folds: int, seed: int) -> IndexPairs:
    """LFW View 2-style pairs of a labelled set: `per_fold` same and different pairs in each of `folds` folds.

    Folds share no identity when there are at least two identities per fold (LFW's protocol), else they are
    drawn from all identities. When the images cannot give `per_fold` distinct pairs, the count is halved
    until they can, with a message.

    Shape:
        - labels: (N,); the pairs index it, (folds * 2 * n,) each.
    """
    identities = len(np.unique(labels))
    if identities < 2:
        raise ValueError(f"verification pairs need at least two test identities, got {identities}; hold out more "
                         "with --test-classes or --test-fraction")
    first_error = None
    for disjoint in ((True, False) if identities >= 2 * folds else (False,)):
        n = per_fold
        while n >= 1:
            try:
                pairs = make_pairs(labels, n_same=n, n_diff=n, folds=folds, seed=seed, disjoint=disjoint)
            except ValueError as err:
                first_error, n = first_error or err, n // 2
                continue
            if n < per_fold or not disjoint and identities >= 2 * folds:
                print(f"pairs: {identities} identities, {len(labels)} images give {n} same + {n} different pairs "
                      f"per fold{'' if disjoint else ', folds sharing identities'}", file=sys.stderr)
            return pairs
    raise ValueError(f"too few images for verification pairs: {first_error}")


def write_eval_pairs(path: Path, pairs: IndexPairs, side: EvalSide) -> None:
    """Write generated pairs: as files (LFW's format when they fit it) when the images have paths, else as
    indices into the source split (built-in arrays), which `read_index_pairs` reads back."""
    from ninshiki.data.formats.pairs import write_pairs

    if side.paths is not None:
        write_pairs(path, pairs.to_pairs_set([Path(p) for p in side.paths]))
        return
    a, b = side.source_index[pairs.a], side.source_index[pairs.b]
    rows = [f"{i} {j} {int(s)} {f}" for i, j, s, f in zip(a, b, pairs.same, pairs.fold)]
    write_text(path, f"{INDEX_HEADER} of {side.description}: item_a item_b same fold (items counted from 0)\n"
               + "\n".join(rows) + "\n")


def is_index_pairs(path: Path) -> bool:
    return index_pairs_source(path) is not None


def index_pairs_source(path: Path) -> str | None:
    """The split an index pairs file counts items of ("the test split of fashion-mnist"), from its header;
    None when the file is not an index pairs file."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        first = f.readline()
    if not first.startswith(INDEX_HEADER):
        return None
    return first[len(INDEX_HEADER):].removeprefix(" of ").rpartition(":")[0].strip()


def read_index_pairs(path: Path, num_items: int) -> IndexPairs:
    """Read an index pairs file; a bad line is an error naming the file and line."""
    a, b, same, fold = [], [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = line.split()
        if not fields or line.lstrip().startswith("#"):
            continue
        where = f"{path}, line {number}"
        if len(fields) != 4 or not all(f.isdigit() for f in fields) or fields[2] not in ("0", "1"):
            raise ValueError(f"{where}: expected 'item_a item_b same fold' (non-negative integers, same 0 or 1), "
                             f"got {line.strip()!r}")
        if max(int(fields[0]), int(fields[1])) >= num_items:
            raise ValueError(f"{where}: item {max(int(fields[0]), int(fields[1]))} is past the {num_items} images "
                             f"of the data; were the pairs written for another data set?")
        a.append(int(fields[0]))
        b.append(int(fields[1]))
        same.append(fields[2] == "1")
        fold.append(int(fields[3]))
    if not a:
        raise ValueError(f"{path}: no pairs")
    return IndexPairs(np.array(a, np.int64), np.array(b, np.int64), np.array(same, bool), np.array(fold, np.int64))


def write_scores(path: Path, scores: np.ndarray, same: np.ndarray, fold: np.ndarray) -> None:
    """scores.csv: one row per scored pair (pair, score, same, fold)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["pair", "score", "same", "fold"])
    writer.writerows((i, repr(float(s)), int(y), int(f)) for i, (s, y, f) in enumerate(zip(scores, same, fold)))
    write_text(path, buffer.getvalue())


def _test_identities(config: VerifyEvalConfig, record: dict) -> tuple[str | None, float | None, str]:
    """(test_classes, test_fraction, how they were chosen) for val: flags, else the run's own held-out
    identities when the data is the data it trained on, else every identity."""
    if config.test_classes or config.test_fraction:
        return config.test_classes, config.test_fraction, "as given"
    if record.get("data") == config.data and record.get("test_identities"):
        return ",".join(record["test_identities"]), None, "held out in training"
    return "all", None, "all identities"


def evaluate(config: VerifyEvalConfig) -> dict[str, float]:
    """Evaluate an embedding network; returns the metrics also written to OUT/metrics.json."""
    from ninshiki.api.verify_gallery import load_embedder
    from ninshiki.engine.runtime import make_runtime
    from ninshiki.engine.verify_loop import rank_metrics, score_pairs
    from ninshiki.metrics.verification import VerificationMetric
    from ninshiki.viz.roc import save_roc

    if not config.weights:
        raise ValueError("verify val needs --weights")
    if not config.data and not config.pairs:
        raise ValueError("verify val needs --data (the identities' images) or --pairs (a pairs file), or both")
    runtime = make_runtime(device=config.device, amp="off", channels_last="off")
    embedder = load_embedder(config.weights)
    side, how = None, ""
    if config.data:
        test_classes, fraction, how = _test_identities(config, embedder.record)
        data = load_verify_data(config.data, test_classes=test_classes, test_fraction=fraction, seed=config.seed,
                                data_root=config.data_root, image_size=embedder.image_size,
                                channels=embedder.channels, strict=config.strict,
                                memory_limit_mb=config.memory_limit_mb)
        side = data.test
    plan = _plan(config, side, embedder)
    embeddings, kept = embedder.embed_parts(plan.parts, runtime, batch_size=config.batch_size,
                                            workers=config.workers)
    scores, used = score_pairs(embeddings, plan.pairs, kept=kept, metric=config.metric)
    if not used.all():
        print(f"left out {int((~used).sum())} pair(s) with an unreadable image", file=sys.stderr)
    same, fold = plan.pairs.same[used], plan.pairs.fold[used]
    metric = VerificationMetric(num_folds=config.folds)
    metric.update(scores, same, fold if len(np.unique(fold)) >= 2 else None)   # one fold: dealt into `folds`
    metrics = metric.compute()
    metrics.update(rank_metrics(embeddings[plan.id_rows], plan.id_labels, kept=kept[plan.id_rows],
                                per_identity=config.gallery_per_identity, metric=config.metric))
    out = Path(config.out)
    write_json(out / "metrics.json", metrics)
    write_scores(out / "scores.csv", scores, same, metric.pairs()[2])
    far, tar, _ = metric.roc()
    save_roc({embedder.name: (far, tar)}, out / "roc.png", title=f"{embedder.name} ({config.metric})")
    if plan.generated is not None and side is not None:
        write_eval_pairs(out / "pairs.txt", plan.generated, side)
    _report(metrics, len(scores), side, how, out)
    return metrics


def _report(metrics: dict[str, float], pairs: int, side: EvalSide | None, how: str, out: Path) -> None:
    who = f" of {len(np.unique(side.labels))} identities ({how}) of {side.description}" if side else ""
    ranks = "".join(f"  {k} {metrics[k]:.4f}" for k in ("rank1", "rank5") if k in metrics)
    print(f"{pairs} pairs{who}: AUC {metrics['auc']:.4f}  EER {metrics['eer']:.4f}  "
          f"TAR@FAR=1e-3 {metrics['tar@far=1e-3']:.4f}  accuracy {metrics['best_acc']:.4f} "
          f"+- {metrics['best_acc_std']:.4f}{ranks}; results in {out}", flush=True)


@dataclass
class _Plan:
    """What val embeds (parts, concatenated in order), the pairs over those rows, and the identification rows."""
    parts: list[Dataset]
    pairs: IndexPairs
    id_rows: np.ndarray
    id_labels: np.ndarray
    generated: IndexPairs | None = None  # pairs drawn here, over the test side's rows (written to OUT/pairs.txt)


def _plan(config: VerifyEvalConfig, side: EvalSide | None, embedder: Embedder) -> _Plan:
    if config.pairs is None:
        if side is None:
            raise ValueError(f"{config.data}: no test identities to draw pairs from")
        pairs = generate_pairs(side.labels, per_fold=config.pairs_per_fold, folds=config.folds, seed=config.seed)
        return _Plan([side.split], pairs, np.arange(len(side.labels)), side.labels, generated=pairs)
    path = Path(config.pairs)
    if not path.is_file():
        raise FileNotFoundError(f"--pairs {path}: no such file")
    if is_index_pairs(path):
        if side is None:
            raise ValueError(f"{path}: index pairs name images of a built-in data set; give it with --data")
        written_for = index_pairs_source(path)
        if written_for and written_for != side.description:
            raise ValueError(f"{path}: the pairs count items of {written_for}, but --data gives {side.description}"
                             " (a training run's val_pairs.txt names training images)")
        pairs = read_index_pairs(path, len(side.source))
        rows = np.union1d(side.source_index, np.r_[pairs.a, pairs.b])                 # (R,) sorted
        remapped = IndexPairs(np.searchsorted(rows, pairs.a), np.searchsorted(rows, pairs.b), pairs.same, pairs.fold)
        return _Plan([take(side.source, rows)], remapped, np.searchsorted(rows, side.source_index), side.labels)
    return _file_plan(config, path, side, embedder)


def _file_plan(config: VerifyEvalConfig, path: Path, side: EvalSide | None, embedder: Embedder) -> _Plan:
    """Pairs naming files: the test side's images are reused where the files are the same."""
    from ninshiki.data.formats.pairs import read_pairs

    root = Path(config.data) if config.data and Path(config.data).is_dir() else None
    pairs_set = read_pairs(path, root=root)
    files, ia, ib = pairs_set.index()
    known = {os.path.abspath(p): i for i, p in enumerate(side.paths)} if side and side.paths else {}
    offset = len(side.labels) if side else 0
    extra = [f for f in files if os.path.abspath(f) not in known]
    row_of_extra = {os.path.abspath(f): offset + i for i, f in enumerate(extra)}
    rows = np.array([known.get(os.path.abspath(f), row_of_extra.get(os.path.abspath(f), -1)) for f in files])
    pairs = IndexPairs(rows[ia], rows[ib], pairs_set.same, pairs_set.fold)
    extra_split = FileSplit([str(f) for f in extra], list(range(len(extra))), embedder.image_size,
                            channels=embedder.channels)
    if side is not None:
        return _Plan([side.split, extra_split], pairs, np.arange(len(side.labels)), side.labels)
    names = [Path(f).parent.name for f in extra]   # no --data: identities are the files' folders
    return _Plan([extra_split], pairs, np.arange(len(extra)), np.unique(names, return_inverse=True)[1])
