"""A database of registered objects for specific-object recognition, saved as one safetensors file.

Each object has a name (its label is its position in `names`) and one or more reference images (views);
each reference keeps its local features, the outline of its image (the polygon `find` projects into the
scene) and where it came from. On disk, the features of all references are stacked into flat tensors with
the reference each row belongs to, and the names, descriptor kind and extractor settings travel as a JSON
record in the safetensors metadata: nothing is pickled, and the file is written atomically.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ninshiki.io import save_safetensors
from ninshiki.match.features import FeatureExtractor, ImageLike, LocalFeatures, as_gray, image_outline

RECORD_KEY = "ninshiki.match"
FORMAT_VERSION = 1
_FEATURE_FIELDS = ("xy", "scale", "angle", "response", "descriptors")


@dataclass(frozen=True)
class Reference:
    """One registered view of an object.

    Attributes:
        label: the object's index in `ObjectDatabase.names`.
        features: its keypoints and descriptors, in reference pixels.
        outline: (4, 2) float64 the reference image's outer corners (see `image_outline`).
        size: (height, width) of the reference image.
        source: the file it was read from, or "" for an array.
    """

    label: int
    features: LocalFeatures
    outline: np.ndarray
    size: tuple[int, int]
    source: str = ""

    @property
    def centre(self) -> np.ndarray:
        """(2,) float64 the centre of the outline."""
        return self.outline.mean(axis=0)


class ObjectDatabase:
    """Registered objects: names, and reference views described by one kind of local feature.

    Args:
        descriptor: the descriptor kind (`FeatureExtractor.name`); set by the first `register` when None.
        extractor_config: the extractor's settings (JSON-able), so a reader can rebuild the same extractor.
    """

    def __init__(self, *, descriptor: str | None = None, extractor_config: dict[str, Any] | None = None) -> None:
        self.descriptor = descriptor
        self.extractor_config = dict(extractor_config or {})
        self.names: list[str] = []
        self.references: list[Reference] = []

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"ObjectDatabase({len(self.names)} objects, {len(self.references)} references, {self.descriptor})"

    def register(self, name: str, images: ImageLike | Sequence[ImageLike], *, extractor: FeatureExtractor,
                 min_features: int = 4) -> int:
        """Describe one or more views of object `name` and add them; returns the object's label.

        Args:
            name: the object (an existing name gets more views).
            images: image files, (H, W) grayscale arrays, or (C, H, W) uint8 arrays/tensors, one or several.
            extractor: describes the images; must be of the database's descriptor kind.
            min_features: a view with fewer keypoints (a blank or tiny image) is an error.
        """
        if not name or not isinstance(name, str):
            raise ValueError(f"an object needs a non-empty name, got {name!r}")
        self._check_extractor(extractor)
        single = isinstance(images, (str, os.PathLike, np.ndarray, torch.Tensor))
        views = [images] if single else list(images)
        if not views:
            raise ValueError(f"{name}: no images given")
        new = []
        for image in views:
            source = str(image) if isinstance(image, (str, os.PathLike)) else ""
            gray = as_gray(image)
            features = extractor.extract(gray)
            if len(features) < min_features:
                where = source or f"image {len(new)} of {name!r}"
                raise ValueError(f"{where}: {len(features)} keypoints found, a reference needs at least "
                                 f"{min_features} (is the image blank, flat or tiny?)")
            new.append((features, gray.shape, source))
        if name not in self.names:
            self.names.append(name)
        label = self.names.index(name)
        for features, (height, width), source in new:
            self.references.append(Reference(label, features, image_outline(height, width), (height, width), source))
        return label

    def _check_extractor(self, extractor: FeatureExtractor) -> None:
        if self.descriptor is None:
            self.descriptor = extractor.name
            config = getattr(extractor, "config", None)
            self.extractor_config = dict(config()) if callable(config) else {}
        elif extractor.name != self.descriptor:
            raise ValueError(f"this database holds {self.descriptor} descriptors; the extractor gives "
                             f"{extractor.name}, which cannot be compared with them")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the database as safetensors (features) with a JSON record (names, settings), atomically."""
        parts = [r.features for r in self.references]
        dim = parts[0].dim if parts else 0
        stacked = LocalFeatures.concatenate(parts, dim)
        tensors = {f: torch.from_numpy(getattr(stacked, f)) for f in _FEATURE_FIELDS}
        tensors["feature_reference"] = torch.from_numpy(
            np.repeat(np.arange(len(parts)), [len(p) for p in parts]).astype(np.int64))        # (N,)
        tensors["labels"] = torch.tensor([r.label for r in self.references], dtype=torch.int64)   # (R,)
        tensors["outlines"] = torch.from_numpy(np.stack([r.outline for r in self.references]) if parts
                                               else np.zeros((0, 4, 2)))                       # (R, 4, 2)
        tensors["sizes"] = torch.tensor([r.size for r in self.references], dtype=torch.int64).reshape(-1, 2)
        record = {"format_version": FORMAT_VERSION, "names": self.names, "descriptor": self.descriptor,
                  "descriptor_dim": dim, "extractor": self.extractor_config,
                  "sources": [r.source for r in self.references]}
        save_safetensors(tensors, path, metadata={RECORD_KEY: json.dumps(record)})
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ObjectDatabase:
        """Read a database written by `save`; a missing, foreign or corrupt file is an error naming it."""
        path = Path(path)
        record, tensors = _read(path)
        try:
            return cls._from_parts(record, tensors)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            message = f"missing {error}" if isinstance(error, KeyError) else str(error)
            raise ValueError(f"{path}: corrupt object database ({message})") from None

    @classmethod
    def _from_parts(cls, record: dict[str, Any], tensors: dict[str, np.ndarray]) -> ObjectDatabase:
        version = record["format_version"]
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"format_version {version!r}; this ninshiki reads up to {FORMAT_VERSION}")
        names, sources = list(record["names"]), list(record["sources"])
        labels, outlines, sizes = tensors["labels"], tensors["outlines"], tensors["sizes"]
        owner = tensors["feature_reference"]
        count = len(labels)
        _expect(outlines, "outlines", (count, 4, 2))
        _expect(sizes, "sizes", (count, 2))
        if len(sources) != count or len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"record lists {len(sources)} sources for {count} references, or bad names {names!r}")
        if count and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(f"tensor 'labels' has values outside 0..{len(names) - 1}")
        if len(owner) and (np.any(np.diff(owner) < 0) or owner.min() < 0 or owner.max() >= count):
            raise ValueError("tensor 'feature_reference' is not a sorted list of reference indices")
        features = LocalFeatures(*(tensors[f] for f in _FEATURE_FIELDS))
        if features.dim != int(record["descriptor_dim"]):
            raise ValueError(f"descriptors have {features.dim} columns, the record says {record['descriptor_dim']}")
        database = cls(descriptor=record["descriptor"], extractor_config=record["extractor"])
        database.names = names
        bounds = np.searchsorted(owner, np.arange(count + 1))                       # (R + 1,)
        for i in range(count):
            database.references.append(Reference(
                int(labels[i]), features.subset(slice(bounds[i], bounds[i + 1])), outlines[i].astype(np.float64),
                (int(sizes[i, 0]), int(sizes[i, 1])), str(sources[i])))
        return database


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON record and the tensors (as arrays) of a database file, or an error naming the file."""
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"object database not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            text = (handle.metadata() or {}).get(RECORD_KEY)
            tensors = {key: handle.get_tensor(key).numpy() for key in handle.keys()}  # noqa: SIM118
    except Exception as error:  # noqa: BLE001 - safetensors raises its own types for bad headers and data
        raise ValueError(f"{path}: not a readable safetensors file ({error})") from None
    if text is None:
        raise ValueError(f"{path}: not a ninshiki object database (no {RECORD_KEY!r} record in its metadata)")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: corrupt object database record ({error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: corrupt object database record (not a JSON object)")  # noqa: TRY004
    return record, tensors


def _expect(array: np.ndarray, name: str, shape: tuple[int, ...]) -> None:
    if array.shape != shape:
        raise ValueError(f"tensor {name!r} has shape {array.shape}, expected {shape}")
