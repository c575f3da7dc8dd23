"""Run configuration of `ninshiki compare classify|detect` (see config.py for how fields become flags)."""
from __future__ import annotations

from dataclasses import dataclass

from ninshiki.config import _check_positive


@dataclass
class CompareConfig:
    """`ninshiki compare TASK`: train several models on one dataset, one table."""
    data: str = ""                       # what `classify train` / `detect train` take as --data
    models: str = ""                     # comma-separated model names, classical and deep alike
    model_kwargs: str | None = None      # per-model options, a YAML mapping: "{haar_cascade: {num_stages: 12}}"
    data_root: str | None = None         # where a built-in dataset's files are (classify)
    train_limit: int | None = None       # classify: a seeded, stratified subset of this many training images
    epochs: int | None = None            # deep models' epochs (default: each command's own)
    time_limit: float | None = None      # detect: deep models' training seconds
    image_size: int | None = None
    batch_size: int | None = None
    speed_images: int = 500              # validation images timed for the CPU images/s column
    seed: int = 0
    out: str = "runs/compare"

    def __post_init__(self) -> None:
        _check_positive(speed_images=self.speed_images)
        if self.train_limit is not None:
            _check_positive(train_limit=self.train_limit)

    def options_of(self, name: str) -> str | None:
        """The `--model-kwargs` of one model's run, as the train commands take it (YAML text), or None."""
        import yaml

        from ninshiki.config import parse_model_kwargs

        table = parse_model_kwargs(self.model_kwargs)
        unknown = sorted(set(table) - set(self.model_names()))
        if unknown:
            raise ValueError(f"--model-kwargs names models not in --models: {unknown}")
        if name not in table:
            return None
        if not isinstance(table[name], dict):
            raise ValueError(f"--model-kwargs: the options of {name} must be a mapping, got {table[name]!r}")
        return yaml.safe_dump(table[name], default_flow_style=True).strip()

    def model_names(self) -> list[str]:
        names = [name.strip() for name in self.models.split(",") if name.strip()]
        if not names:
            raise ValueError("compare needs --models, e.g. --models bof_sift,hog_svm,resnet20")
        if len(set(names)) != len(names):
            raise ValueError(f"--models names a model twice: {self.models}")
        return names
