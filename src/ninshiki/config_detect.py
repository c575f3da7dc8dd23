"""Run configurations of `ninshiki detect train|val|predict` (see config.py for how fields become flags)."""
from __future__ import annotations

from dataclasses import dataclass

from ninshiki.config import _check_choice, _check_positive, parse_model_kwargs

AUGMENT_MODES = ("auto", "ssd", "yolo", "basic", "none")


@dataclass
class DetectTrainConfig:
    """`ninshiki detect train`."""
    data: str = ""                       # our/Ultralytics data YAML, a COCO JSON, a VOC root, or a folder of those
    val_fraction: float = 0.1            # held out (seeded) when the data has no validation split
    model: str = "ssd_lite"
    model_kwargs: str | None = None      # the factory's own options as a YAML mapping, e.g. "{grid_size: 7}"
    weights: str | None = None           # initial weights (safetensors, or a torchvision checkpoint)
    image_size: int | None = None        # square network input; None = the model's own (ssd_lite: 320)
    epochs: int = 30
    time_limit: float | None = None      # seconds of training; epochs are re-planned after the first to fit it
    batch_size: int = 16
    optimizer: str = "adamw"             # sgd | adamw
    lr: float = 2e-3                     # peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4           # not applied to norms and biases
    schedule: str = "cosine"             # cosine | step | constant, stepped every iteration
    warmup_epochs: float = 1.0
    step_epochs: int = 30
    gamma: float = 0.1
    clip_grad: float | None = 10.0       # max global gradient norm; detection losses spike early on
    ema: bool = False
    ema_decay: float = 0.999
    augment: str = "auto"                # auto (the model's own recipe) | ssd | yolo | basic | none
    mosaic: float = 0.0                  # probability of a 4-image mosaic per training sample
    patience: int | None = None          # stop after this many validations without a better mAP
    val_every: int = 1                   # epochs between validations (mAP); the last epoch always validates
    score_threshold: float = 0.001       # for mAP: keep low-scoring boxes, as the COCO protocol expects
    max_detections: int = 100
    cache_images: bool = True            # keep decoded images in memory after the first epoch
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"
    compile: bool = False
    workers: int = 2                     # data-loading processes (decoding and augmentation)
    seed: int = 0
    out: str = "runs/detect"
    resume: str | None = None            # a previous run's OUT to continue from its last epoch

    def __post_init__(self) -> None:
        _check_choice("optimizer", self.optimizer, ("sgd", "adamw"))
        _check_choice("schedule", self.schedule, ("cosine", "step", "constant"))
        _check_choice("augment", self.augment, AUGMENT_MODES)
        _check_choice("amp", self.amp, ("auto", "bf16", "off"))
        _check_choice("channels_last", self.channels_last, ("auto", "on", "off"))
        _check_positive(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, val_every=self.val_every,
                        max_detections=self.max_detections)
        if self.time_limit is not None:
            _check_positive(time_limit=self.time_limit)
        if not 0.0 <= self.mosaic <= 1.0:
            raise ValueError(f"mosaic is a probability in [0, 1], got {self.mosaic}")
        parse_model_kwargs(self.model_kwargs)


@dataclass
class DetectEvalConfig:
    """`ninshiki detect val`."""
    data: str = ""
    split: str = "val"                   # val | train
    val_fraction: float = 0.1
    model: str | None = None             # checked against the weights' own record when given
    weights: str = ""
    image_size: int | None = None        # None = as trained
    score_threshold: float = 0.001
    nms_iou: float | None = None         # None = the model's own
    max_detections: int = 100
    batch_size: int = 16
    device: str = "auto"
    workers: int = 2
    seed: int = 0                        # must equal training's for an automatic split to be the same
    out: str = "runs/detect-val"

    def __post_init__(self) -> None:
        _check_choice("split", self.split, ("val", "train"))


@dataclass
class DetectPredictConfig:
    """`ninshiki detect predict`."""
    source: str = ""                     # an image, a folder, a glob, or a video file
    model: str | None = None
    weights: str = ""
    image_size: int | None = None
    score_threshold: float = 0.25        # what is drawn and written
    nms_iou: float | None = None
    max_detections: int = 100
    batch_size: int = 8
    video_stride: int = 1                # use every n-th frame of a video
    save_images: bool = True             # drawn images (or a drawn video) besides predictions.json
    device: str = "auto"
    out: str = "runs/detect-predict"

    def __post_init__(self) -> None:
        _check_positive(batch_size=self.batch_size, video_stride=self.video_stride)


def require(config: object, *names: str) -> None:
    """Fields without a usable default must be given (checked when a command runs, after YAML and flags merge)."""
    missing = [f"--{name.replace('_', '-')}" for name in names if not getattr(config, name)]
    if missing:
        raise ValueError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")
