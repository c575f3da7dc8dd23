"""`ninshiki verify enroll` and `verify identify`: a gallery of known identities, and who each probe is.

`enroll` embeds every image of identity folders (``people/<identity>/<image>``) and saves a ``.npz`` of plain
numpy arrays (names, labels, embeddings, paths, the weights file's SHA-256 and its record as JSON), read back
with ``allow_pickle=False``: a gallery file can never run code. `identify` ranks the gallery's identities
for each probe image by the cosine similarity of their best-matching enrolled image, and calls the probe
"unknown" when even the best is below the threshold (open-set identification). Embeddings of two different
networks are not comparable, so `identify` refuses a gallery enrolled with other weights.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ninshiki.config_verify import VerifyEnrollConfig, VerifyIdentifyConfig
from ninshiki.engine.batches import Normalizer
from ninshiki.engine.runtime import Runtime, make_runtime
from ninshiki.io import atomic_path, write_json, write_text

GALLERY_KEYS = ("names", "labels", "embeddings", "paths", "weights_sha256", "record")


@dataclass
class Embedder:
    """A trained embedding network with what its weights' record says about its input."""
    model: nn.Module
    name: str
    record: dict[str, Any]
    channels: int
    image_size: tuple[int, int]
    normalizer: Normalizer

    def embed_parts(self, parts: list[Dataset], runtime: Runtime, *, batch_size: int = 256, workers: int = 0
                    ) -> tuple[Tensor, np.ndarray]:
        """Embed several splits one after the other; unreadable images are warned about and marked.

        Shape:
            - Output: embeddings (N, D) float32 on the CPU, kept (N,) bool; N the parts' total length.
        """
        from ninshiki.engine.verify_loop import embed_split

        model = self.model.to(runtime.device)
        rows, kept = [], []
        for part in parts:
            e, k, skipped = embed_split(model, part, self.normalizer, runtime, batch_size=batch_size,
                                        workers=workers, progress=True)
            for message in skipped:
                warnings.warn(f"skipped unreadable image {message}", stacklevel=2)
            rows.append(e)
            kept.append(k)
        return torch.cat(rows), np.concatenate(kept)


def load_embedder(weights: str) -> Embedder:
    """Build the embedding network a `verify train` weights file records, with its weights loaded.

    Raises:
        ValueError: the file has no ninshiki record, or holds a model of another task.
    """
    from ninshiki.engine import checkpoint
    from ninshiki.models.weights import create_model

    record = checkpoint.read_record(weights)
    if not record:
        raise ValueError(f"{weights}: has no ninshiki record (model, input size, ...); give weights written by "
                         "`ninshiki verify train`")
    if record.get("task") != "verify":
        raise ValueError(f"{weights}: holds a {record.get('task')!r} model ({record.get('model')}), not an "
                         "embedding network; give weights written by `ninshiki verify train`")
    model = create_model(record["model"], num_classes=0, in_channels=int(record["channels"]), weights=weights,
                         **record.get("model_kwargs", {}))
    return Embedder(model.eval(), record["model"], record, int(record["channels"]),
                    (int(record["image_size"][0]), int(record["image_size"][1])),
                    Normalizer(tuple(record["mean"]), tuple(record["std"])))


def weights_digest(path: str | Path) -> str:
    """SHA-256 of a weights file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def enroll(config: VerifyEnrollConfig) -> Path:
    """Embed every image of the identity folders `config.gallery`; writes and returns the .npz `config.out`."""
    from ninshiki.data.splits import FileSplit
    from ninshiki.data.verification import scan_identities

    if not config.weights or not config.gallery:
        raise ValueError("verify enroll needs --weights and --gallery (identity folders)")
    runtime = make_runtime(device=config.device, amp="off", channels_last="off")
    embedder = load_embedder(config.weights)
    people = scan_identities(config.gallery)
    files = FileSplit([str(p) for p in people.paths], list(range(len(people.paths))), embedder.image_size,
                      channels=embedder.channels)
    embeddings, kept = embedder.embed_parts([files], runtime, batch_size=config.batch_size, workers=config.workers)
    labels = people.labels[kept]                                         # (G,)
    lost = sorted(set(range(len(people.identities))) - set(labels.tolist()))
    if lost:
        warnings.warn(f"no readable image of {len(lost)} identities, left out of the gallery: "
                      f"{', '.join(people.identities[i] for i in lost[:10])}", stacklevel=2)
    arrays = {"names": np.array(people.identities, dtype=str), "labels": labels.astype(np.int64),
              "embeddings": embeddings.numpy()[kept].astype(np.float32),
              "paths": np.array([str(p) for p, k in zip(people.paths, kept) if k], dtype=str),
              "weights_sha256": np.array(weights_digest(config.weights)),
              "record": np.array(json.dumps(embedder.record, sort_keys=True))}
    out = Path(config.out)
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    print(f"enrolled {len(labels)} images of {len(set(labels.tolist()))} identities from {config.gallery} "
          f"into {out}", flush=True)
    return out


def read_gallery(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a gallery written by `enroll` (no pickled objects are ever loaded)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--gallery {path}: no such file (write one with `ninshiki verify enroll`)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: not a gallery .npz written by `ninshiki verify enroll` ({err})") from None
    missing = [key for key in GALLERY_KEYS if key not in arrays]
    if missing:
        raise ValueError(f"{path}: not a gallery written by `ninshiki verify enroll` (no {', '.join(missing)})")
    e, labels = arrays["embeddings"], arrays["labels"]
    if (e.ndim != 2 or labels.shape != (len(e),) or not len(e) or labels.min() < 0
            or labels.max() >= len(arrays["names"])):
        raise ValueError(f"{path}: inconsistent gallery arrays (embeddings {e.shape}, labels {labels.shape})")
    return arrays


def rank_identities(probes: np.ndarray, gallery: np.ndarray, labels: np.ndarray, topk: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The `topk` identities whose best-matching gallery image is most similar (cosine) to each probe.

    Returns:
        (identities, similarities), best first; fewer than `topk` columns when the gallery has fewer identities.

    Shape:
        - probes: (P, D); gallery: (G, D); labels: (G,) identity codes.
        - Outputs: (P, min(topk, number of identities)).
    """
    from ninshiki.metrics.verification import similarity

    codes, grouped = np.unique(labels, return_inverse=True)
    order = np.argsort(grouped, kind="stable")
    starts = np.r_[0, np.cumsum(np.bincount(grouped))[:-1]]             # (K,) first column of each identity
    per_identity = np.maximum.reduceat(similarity(probes.astype(np.float64), gallery.astype(np.float64)[order],
                                                  "cosine"), starts, axis=1)                       # (P, K)
    best = np.argsort(-per_identity, axis=1, kind="stable")[:, :topk]   # (P, k)
    return codes[best], np.take_along_axis(per_identity, best, axis=1)


def identify(config: VerifyIdentifyConfig) -> list[dict[str, Any]]:
    """Name the identity of every probe image; writes OUT/identify.json and .csv and prints a table."""
    from ninshiki.api.classify_predict import find_images
    from ninshiki.data.splits import FileSplit

    if not config.weights or not config.gallery or not config.source:
        raise ValueError("verify identify needs --weights, --gallery (a gallery.npz) and --source")
    embedder = load_embedder(config.weights)
    gallery = read_gallery(config.gallery)
    if str(gallery["weights_sha256"]) != weights_digest(config.weights):
        raise ValueError(f"{config.gallery}: was enrolled with other weights than {config.weights}; their "
                         "embeddings are not comparable (enroll again with these weights)")
    paths = find_images(config.source)
    if not paths:
        raise FileNotFoundError(f"--source {config.source}: no image files found")
    runtime = make_runtime(device=config.device, amp="off", channels_last="off")
    files = FileSplit([str(p) for p in paths], list(range(len(paths))), embedder.image_size, channels=embedder.channels)
    embeddings, kept = embedder.embed_parts([files], runtime, batch_size=config.batch_size, workers=config.workers)
    threshold = config.threshold if config.threshold is not None else embedder.record.get("threshold")
    codes, sims = rank_identities(embeddings.numpy()[kept], gallery["embeddings"], gallery["labels"], config.topk)
    names = gallery["names"]
    results = []
    for path, ids, values in zip([p for p, k in zip(paths, kept) if k], codes, sims):
        known = threshold is None or values[0] >= threshold
        results.append({"path": str(path), "identity": str(names[ids[0]]) if known else "unknown",
                        "top": [{"identity": str(names[i]), "similarity": float(v)} for i, v in zip(ids, values)]})
    _write(Path(config.out), results, threshold, config.gallery)
    return results


def _write(out: Path, results: list[dict[str, Any]], threshold: float | None, gallery: str) -> None:
    write_json(out / "identify.json", {"gallery": gallery, "threshold": threshold, "results": results})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "identity", "rank", "candidate", "similarity"])
    for item in results:
        writer.writerows([item["path"], item["identity"], rank, top["identity"], f"{top['similarity']:.6f}"]
                         for rank, top in enumerate(item["top"], start=1))
    write_text(out / "identify.csv", buffer.getvalue())
    width = max([len("probe"), *(len(Path(r["path"]).name) for r in results)])
    print(f"{'probe'.ljust(width)}  {'identity':16} best candidates (cosine similarity)")
    for item in results:
        tops = ", ".join(f"{t['identity']} {t['similarity']:.3f}" for t in item["top"][:3])
        print(f"{Path(item['path']).name.ljust(width)}  {item['identity']:16} {tops}")
    rule = f"threshold {threshold:.4f}" if threshold is not None else "no threshold: every probe gets its nearest"
    print(f"{len(results)} probe(s), {rule}; results in {out}", file=sys.stderr, flush=True)
