"""Run configurations of `ninshiki segment train|val|predict` (see config.py for how fields become flags).

`instance train|val|predict` (Mask R-CNN) use the detection configs of config_detect.py with instance
defaults: an instance segmenter is a detector whose detections carry masks.
"""
from __future__ import annotations

from dataclasses import dataclass

from ninshiki.config import _check_choice, _check_positive, parse_model_kwargs
from ninshiki.config_detect import DetectEvalConfig, DetectPredictConfig, DetectTrainConfig


@dataclass
class SegmentTrainConfig:
    """`ninshiki segment train`."""
    data: str = ""                       # a mask-PNG folder, a VOC root, a COCO json, a YOLO-seg data.yaml, our YAML
    val_fraction: float = 0.1            # held out (seeded) when the data has no validation split
    model: str = "fcn8s_small"
    model_kwargs: str | None = None      # the factory's own options as a YAML mapping
    crf: bool = False                    # put CRF-as-RNN (mean-field dense CRF layers) on top, trained end to end
    crf_iterations: int = 5              # mean-field iterations in training (the paper: 5)
    weights: str | None = None           # initial weights (safetensors, or a torchvision checkpoint)
    image_size: int | None = None        # side of the square training crops; None = the model's own
    scale_min: float = 0.5               # random rescale range of training images (before the crop)
    scale_max: float = 2.0
    rotate: float = 0.0                  # random rotation of training images, up to this many degrees either way
    max_size: int | None = None          # validation: images whose longer side exceeds this are scaled down
                                         # (recorded: val and predict default to it)
    epochs: int = 30
    time_limit: float | None = None      # seconds of training; epochs are re-planned after each to fit it
    batch_size: int = 8
    optimizer: str = "adamw"             # sgd | adamw
    lr: float = 2e-3                     # peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4           # not applied to norms and biases
    schedule: str = "cosine"             # cosine | step | constant, stepped every iteration
    warmup_epochs: float = 1.0
    step_epochs: int = 30
    gamma: float = 0.1
    clip_grad: float | None = 10.0
    ema: bool = False
    ema_decay: float = 0.999
    patience: int | None = None          # stop after this many validations without a better mIoU
    val_every: int = 1                   # epochs between validations; the last epoch always validates
    cache_images: bool = True            # keep decoded images in memory after the first epoch
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"
    compile: bool = False
    workers: int = 2
    seed: int = 0
    out: str = "runs/segment"
    resume: str | None = None            # a previous run's OUT to continue from its last epoch

    def __post_init__(self) -> None:
        _check_choice("optimizer", self.optimizer, ("sgd", "adamw"))
        _check_choice("schedule", self.schedule, ("cosine", "step", "constant"))
        _check_choice("amp", self.amp, ("auto", "bf16", "off"))
        _check_choice("channels_last", self.channels_last, ("auto", "on", "off"))
        _check_positive(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, val_every=self.val_every,
                        crf_iterations=self.crf_iterations, scale_min=self.scale_min)
        if self.scale_max < self.scale_min:
            raise ValueError(f"scale_max ({self.scale_max}) is below scale_min ({self.scale_min})")
        if not 0.0 <= self.rotate <= 180.0:
            raise ValueError(f"rotate is a largest rotation in degrees, in [0, 180], got {self.rotate}")
        if self.time_limit is not None:
            _check_positive(time_limit=self.time_limit)
        parse_model_kwargs(self.model_kwargs)


@dataclass
class SegmentEvalConfig:
    """`ninshiki segment val`."""
    data: str = ""
    split: str = "val"                   # val | train
    val_fraction: float = 0.1
    model: str | None = None             # checked against the weights' own record when given
    weights: str = ""
    crf: bool = False                    # plain weights: refine with CRF-as-RNN at its initial parameters
                                         # (a dense CRF as post-processing; CRF weights always run theirs)
    crf_iterations: int | None = None    # CRF models: mean-field iterations at test time (None: as trained)
    max_size: int | None = None          # images whose longer side exceeds this are scaled down (None: training's)
    tta: bool = False                    # average mirrored and rescaled passes (before any CRF and the arg-max)
    tta_scales: str = "0.75,1,1.25"      # with --tta: factors on top of max_size's scaling
    batch_size: int = 8
    save_images: int = 8                 # image / ground truth / prediction rows drawn in OUT/samples.png
    device: str = "auto"
    workers: int = 2
    seed: int = 0                        # must equal training's for an automatic split to be the same
    out: str = "runs/segment-val"

    def __post_init__(self) -> None:
        _check_choice("split", self.split, ("val", "train"))
        _check_positive(batch_size=self.batch_size)
        parse_scales(self.tta_scales)


@dataclass
class SegmentPredictConfig:
    """`ninshiki segment predict`."""
    source: str = ""                     # an image, a folder, a glob, or a video file
    model: str | None = None
    weights: str = ""
    crf: bool = False                    # as in val
    crf_iterations: int | None = None
    max_size: int | None = None          # as in val
    tta: bool = False                    # as in val
    tta_scales: str = "0.75,1,1.25"
    batch_size: int = 4
    save_masks: bool = True              # class-map PNGs (VOC palette) besides the drawn overlays
    save_images: bool = True             # overlays with a legend (or a drawn video)
    video_stride: int = 1
    device: str = "auto"
    out: str = "runs/segment-predict"

    def __post_init__(self) -> None:
        _check_positive(batch_size=self.batch_size, video_stride=self.video_stride)
        parse_scales(self.tta_scales)


@dataclass
class InstanceTrainConfig(DetectTrainConfig):
    """`ninshiki instance train`: a detection run whose targets and detections carry masks."""
    model: str = "mask_rcnn_small"
    out: str = "runs/instance"


@dataclass
class InstanceEvalConfig(DetectEvalConfig):
    """`ninshiki instance val`: box and mask COCO AP."""
    out: str = "runs/instance-val"


@dataclass
class InstancePredictConfig(DetectPredictConfig):
    """`ninshiki instance predict`."""
    out: str = "runs/instance-predict"


def parse_scales(text: str) -> tuple[float, ...]:
    """"0.75,1,1.25" -> (0.75, 1.0, 1.25); a clear error for anything else."""
    try:
        scales = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--tta-scales takes comma-separated positive numbers like 0.75,1,1.25, got {text!r}") from None
    if not scales or not all(0.1 <= s <= 4.0 for s in scales):
        raise ValueError(f"--tta-scales takes comma-separated scales between 0.1 and 4, got {text!r}")
    return scales
