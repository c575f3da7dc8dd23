"""Run configurations of `ninshiki verify train|val|enroll|identify` (see config.py for how fields become flags).

Open-set protocol: the identities (classes) of a data source are split into training, validation and test
identities, so that no test identity is seen in training or in choosing best.safetensors. `--test-classes`
names the test ones (class names, or indices into the sorted class list); otherwise `--test-fraction` of the
classes are drawn at random with `--seed`. `verify train` holds `--val-classes` (or `--val-fraction`) of the
remaining training identities out for its per-epoch validation.
"""
from __future__ import annotations

from dataclasses import dataclass

from ninshiki.config import _check_choice, _check_positive, parse_model_kwargs

KEY_METRICS = ("auc", "best_acc")
SCORE_METRICS = ("cosine", "l2")


def _check_pairs(pairs_per_fold: int, folds: int, gallery_per_identity: int) -> None:
    _check_positive(pairs_per_fold=pairs_per_fold, gallery_per_identity=gallery_per_identity)
    if folds < 2:
        raise ValueError(f"folds must be >= 2 (LFW's protocol picks each fold's threshold on the others), got {folds}")


def _check_val_classes(val_classes: str | None, test_classes: str | None) -> None:
    """The clashes visible without the data (the same name or index in both); the data loader checks the rest."""
    if not val_classes:
        return
    val = [t.strip() for t in val_classes.split(",") if t.strip()]
    if not val:
        raise ValueError(f"val_classes: no class given in {val_classes!r}")
    test = {t.strip() for t in (test_classes or "").split(",")}
    clash = [t for t in val if t in test or test_classes and test_classes.strip().lower() == "all"]
    if clash:
        raise ValueError(f"val_classes {', '.join(clash)} also held out for testing (test_classes {test_classes}); "
                         "validation identities are training identities")


@dataclass
class VerifyTrainConfig:
    """`ninshiki verify train`."""
    data: str = ""                       # a built-in name, identity (class) folders, a CSV list or an IDX folder
    data_root: str | None = None         # where a built-in dataset's files are, if not the default
    image_size: int | None = None        # square input size; None = native for built-ins, 224 for folders
    strict: bool = False                 # unreadable files are errors instead of counted skips
    memory_limit_mb: int = 2048
    test_classes: str | None = None      # held-out identities, e.g. "6,7,8,9" (names or indices); wins over fraction
    test_fraction: float = 0.25          # else this fraction of the identities, drawn with `seed`; 0 = none
    val_classes: str | None = None       # training identities validated on (names or indices); wins over fraction
    val_fraction: float = 0.2            # else this fraction of the rest (>= 2 of >= 4); 0 = no validation, best = last
    pairs_per_fold: int = 300            # validation: same and different pairs per fold (LFW: 300)
    folds: int = 10
    gallery_per_identity: int = 1        # validation rank-k: the first images of each identity form the gallery
    model: str = "triplet_resnet20"
    model_kwargs: str | None = None      # the factory's own options as a YAML mapping, e.g. "{head: linear}"
    weights: str | None = None           # initial weights: a verify or classify run's, or a classifier state dict
    embedding_dim: int = 128
    loss: str = "triplet"                # triplet | contrastive
    mining: str = "batch_hard"           # batch_hard | semi_hard | batch_all
    margin: float | None = None          # None: 0.2 (triplet) or 1.0 (contrastive)
    p: int = 16                          # identities per batch
    k: int = 4                           # images per identity
    epochs: int = 20
    batches_per_epoch: int | None = None  # None: usable images // (p k)
    optimizer: str = "adamw"             # adamw | sgd
    lr: float = 1e-3
    momentum: float = 0.9                # sgd only
    weight_decay: float = 5e-4           # not applied to norms and biases
    warmup_epochs: float = 1.0           # linear warmup from lr / 100, then cosine to zero, per step
    clip_grad: float | None = None
    augment: str = "crop-flip"           # none | flip | crop | crop-flip
    key_metric: str = "auc"              # auc | best_acc: picks best.safetensors
    time_limit: float | None = None      # seconds of training; epochs are re-planned after each to fit it
    device: str = "auto"
    amp: str = "auto"                    # auto (bf16 on CUDA when supported) | bf16 | off
    channels_last: str = "auto"
    compile: bool = False
    workers: int = 2                     # decoding workers for data streamed from disk
    seed: int = 0
    out: str = "runs/verify"
    resume: str | None = None            # a previous run's OUT to continue from its last epoch

    def __post_init__(self) -> None:
        _check_choice("loss", self.loss, ("triplet", "contrastive"))
        _check_choice("mining", self.mining, ("batch_hard", "semi_hard", "batch_all"))
        _check_choice("optimizer", self.optimizer, ("adamw", "sgd"))
        _check_choice("augment", self.augment, ("none", "flip", "crop", "crop-flip"))
        _check_choice("key_metric", self.key_metric, KEY_METRICS)
        _check_choice("amp", self.amp, ("auto", "bf16", "off"))
        _check_choice("channels_last", self.channels_last, ("auto", "on", "off"))
        _check_positive(epochs=self.epochs, lr=self.lr, embedding_dim=self.embedding_dim)
        if self.p < 2 or self.k < 2:
            raise ValueError(f"P x K batches need p >= 2 and k >= 2; got p={self.p}, k={self.k}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        _check_val_classes(self.val_classes, self.test_classes)
        if self.batches_per_epoch is not None:
            _check_positive(batches_per_epoch=self.batches_per_epoch)
        if self.time_limit is not None:
            _check_positive(time_limit=self.time_limit)
        _check_pairs(self.pairs_per_fold, self.folds, self.gallery_per_identity)
        parse_model_kwargs(self.model_kwargs)


@dataclass
class VerifyEvalConfig:
    """`ninshiki verify val`."""
    data: str | None = None              # the identities' images; optional with --pairs naming identity folders
    data_root: str | None = None
    strict: bool = False
    memory_limit_mb: int = 2048
    pairs: str | None = None             # an LFW / simple pairs file (or a val run's OUT/pairs.txt); else generated
    weights: str = ""
    test_classes: str | None = None      # "all", or names / indices; None: the run's held-out identities when
    test_fraction: float | None = None   # --data is the data it trained on, else all identities
    pairs_per_fold: int = 300
    folds: int = 10
    gallery_per_identity: int = 1        # rank-k: the first images of each identity form the gallery
    metric: str = "cosine"               # cosine | l2 (scores are similarities: -distance for l2)
    batch_size: int = 256
    device: str = "auto"
    workers: int = 2
    seed: int = 0                        # must equal training's for a drawn split and generated pairs to match
    out: str = "runs/verify-val"

    def __post_init__(self) -> None:
        _check_choice("metric", self.metric, SCORE_METRICS)
        _check_positive(batch_size=self.batch_size)
        if self.test_fraction is not None and not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        _check_pairs(self.pairs_per_fold, self.folds, self.gallery_per_identity)


@dataclass
class VerifyEnrollConfig:
    """`ninshiki verify enroll`."""
    weights: str = ""
    gallery: str = ""                    # identity folders: root/<identity>/<image>
    batch_size: int = 64
    device: str = "auto"
    workers: int = 2
    out: str = "gallery.npz"

    def __post_init__(self) -> None:
        _check_positive(batch_size=self.batch_size)


@dataclass
class VerifyIdentifyConfig:
    """`ninshiki verify identify`."""
    weights: str = ""
    gallery: str = ""                    # a gallery.npz written by `verify enroll` with the same weights
    source: str = ""                     # an image, a folder or a glob
    threshold: float | None = None       # cosine similarity below which a probe is "unknown"; None: the weights'
    topk: int = 5                        # record's validation threshold when it has one, else never unknown
    batch_size: int = 64
    device: str = "auto"
    workers: int = 2
    out: str = "runs/identify"

    def __post_init__(self) -> None:
        _check_positive(batch_size=self.batch_size, topk=self.topk)
        if self.threshold is not None and not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {self.threshold}")
