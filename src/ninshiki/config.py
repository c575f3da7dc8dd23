"""Run configurations: one dataclass per command, loaded from defaults, then `--config run.yaml`, then flags.

Every field is a command-line flag of the same name (`batch_size` <-> `--batch-size`), so a YAML file
and a command line are two spellings of the same thing. Unknown YAML keys are errors.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


@dataclass
class TrainConfig:
    """`ninshiki classify train`."""
    data: str = "digits"                 # built-in name, class folder, CSV list or IDX folder
    data_root: str | None = None         # where a built-in dataset's files are, if not the default
    val_data: str | None = None          # a separate validation source (else the dataset's own split)
    val_split: float = 0.1               # fraction held out, stratified, when the data has no split
    image_size: int | None = None        # square input size; None = native for built-ins, 224 for folders
    strict: bool = False                 # unreadable files are errors instead of counted skips
    memory_limit_mb: int = 2048          # decoded sets up to this size are held in memory; larger ones stream
    train_limit: int | None = None       # train on a seeded, stratified subset of this many images
    model: str = "resnet20"
    model_kwargs: str | None = None      # the factory's own options as a YAML mapping, e.g. "{width: 16}"
    weights: str | None = None           # initial weights: safetensors or a torchvision checkpoint
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"               # sgd | adamw
    lr: float = 0.1                      # peak learning rate, for a batch of `batch_size`
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4           # not applied to norms and biases
    schedule: str = "cosine"             # cosine | step | constant, stepped every iteration
    warmup_epochs: float = 1.0           # linear warmup from lr / 100
    step_epochs: int = 30                # step schedule: multiply by gamma every step_epochs
    gamma: float = 0.1
    label_smoothing: float = 0.0
    clip_grad: float | None = None       # max global gradient norm
    aux_weight: float = 0.3              # auxiliary classifiers' loss weight (GoogLeNet, as in the paper)
    ema: bool = False                    # evaluate and save an exponential moving average of the weights
    ema_decay: float = 0.999
    patience: int | None = None          # stop after this many epochs without a better val top-1
    augment: str = "crop-flip"           # none | flip | crop | crop-flip (random crop with 1/8 padding)
    tta: bool = False                    # evaluate on each image and its mirror image (not for digits or text)
    device: str = "auto"                 # auto | cpu | cuda | cuda:N
    amp: str = "auto"                    # auto (bf16 on CUDA when supported) | bf16 | off
    channels_last: str = "auto"          # auto (on for CUDA) | on | off
    compile: bool = False                # torch.compile the model
    workers: int = 2                     # decoding workers for data streamed from disk
    seed: int = 0
    out: str = "runs/train"
    resume: str | None = None            # a previous run's OUT to continue from its last epoch

    def __post_init__(self) -> None:
        _check_choice("optimizer", self.optimizer, ("sgd", "adamw"))
        _check_choice("schedule", self.schedule, ("cosine", "step", "constant"))
        _check_choice("augment", self.augment, ("none", "flip", "crop", "crop-flip"))
        _check_choice("amp", self.amp, ("auto", "bf16", "off"))
        _check_choice("channels_last", self.channels_last, ("auto", "on", "off"))
        _check_positive(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr)
        if self.train_limit is not None:
            _check_positive(train_limit=self.train_limit)
        parse_model_kwargs(self.model_kwargs)
        if not 0.0 <= self.val_split < 1.0:
            raise ValueError(f"val_split must be in [0, 1), got {self.val_split}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


@dataclass
class EvalConfig:
    """`ninshiki classify val`."""
    data: str = "digits"
    data_root: str | None = None
    val_data: str | None = None
    val_split: float = 0.1
    strict: bool = False
    memory_limit_mb: int = 2048
    model: str | None = None             # checked against the weights' own record when given
    weights: str = ""
    tta: bool | None = None              # mirror-image test-time augmentation; None = as the weights were trained
    batch_size: int = 256
    device: str = "auto"
    workers: int = 2
    seed: int = 0                        # must equal training's for an automatic split to be the same
    out: str = "runs/val"


@dataclass
class PredictConfig:
    """`ninshiki classify predict`."""
    source: str = ""                     # an image, a folder, or a glob
    model: str | None = None
    weights: str = ""
    tta: bool | None = None              # mirror-image test-time augmentation; None = as the weights were trained
    topk: int = 5
    batch_size: int = 64
    workers: int = 2                     # decoding workers
    device: str = "auto"
    out: str = "runs/predict"


def parse_model_kwargs(text: str | None) -> dict[str, Any]:
    """`--model-kwargs "{width: 16, dropout: 0.1}"` -> {"width": 16, "dropout": 0.1}."""
    if not text:
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"model_kwargs: not a YAML mapping: {text!r} ({error})") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"model_kwargs: expected a mapping such as '{{width: 16}}', got {text!r}")
    return value


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _scalar_type(annotation: Any) -> type:
    """`int | None` -> int; `str` -> str."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field. Defaults are suppressed so that only flags the user typed override YAML."""
    parser.add_argument("--config", default=argparse.SUPPRESS, metavar="RUN.yaml",
                        help="a YAML file of these same fields; flags given as well override it")
    for f in fields(cls):
        kind = _scalar_type(_field_type(cls, f.name))
        flag = "--" + f.name.replace("_", "-")
        help_text = f"(default: {f.default})"
        if kind is bool:
            parser.add_argument(flag, nargs="?", const=True, type=_parse_bool, default=argparse.SUPPRESS,
                                metavar="BOOL", help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_text)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
    return data


def build_config(cls: type[C], values: dict[str, Any], *, source: str = "config") -> C:
    """Make a `cls` from a dict, rejecting unknown keys and coercing scalar types."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{source}: unknown field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
    coerced = {}
    for name, value in values.items():
        kind = _scalar_type(_field_type(cls, name))
        if isinstance(value, dict) and kind is str:      # model_kwargs written as a YAML mapping
            coerced[name] = yaml.safe_dump(value, default_flow_style=True).strip()
        elif value is None or isinstance(value, kind):
            coerced[name] = value
        elif kind is bool:
            coerced[name] = _parse_bool(str(value))
        else:
            try:
                coerced[name] = kind(value)
            except (TypeError, ValueError):
                raise ValueError(f"{source}: field {name!r} expects {kind.__name__}, got {value!r}") from None
    return cls(**coerced)


def config_from_namespace(cls: type[C], namespace: argparse.Namespace) -> C:
    """Defaults, then the YAML of `--config`, then the flags the user typed."""
    given = dict(vars(namespace))
    values: dict[str, Any] = {}
    if "config" in given:
        path = given.pop("config")
        values.update(load_yaml(path))
        build_config(cls, values, source=str(path))   # report YAML errors against the file
    values.update({k: v for k, v in given.items() if k in {f.name for f in fields(cls)}})
    return build_config(cls, values)


HARDWARE_FIELDS = ("device", "workers", "amp", "channels_last", "compile")   # may differ on resume


def resolve_resume(config: C) -> C:
    """`--resume OUT` continues OUT's run with OUT's own config; only hardware fields may change."""
    if not getattr(config, "resume", None):
        return config
    run_dir = Path(config.resume)   # type: ignore[attr-defined]
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"--resume {run_dir}: no config.yaml there; is it a ninshiki training run folder?")
    saved = load_yaml(run_dir / "config.yaml")
    saved.update({name: getattr(config, name) for name in HARDWARE_FIELDS})
    saved.update(out=str(run_dir), resume=str(run_dir))
    return build_config(type(config), saved, source=str(run_dir / "config.yaml"))


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
