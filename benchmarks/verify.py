"""Open-set verification on Fashion-MNIST: train on 6 classes (identities), test on the other 4.

Three embeddings of the same 4,000 test images (the official test split's classes 6-9: shirt, sneaker, bag,
ankle boot), scored on the same 10 folds of 300 same + 300 different pairs (LFW's protocol; folds share
identities, there being only 4) and by rank-1 identification against a one-image-per-class gallery:

- raw pixels, L2-normalised (cosine similarity);
- a softmax-trained CNN's features: resnet20 trained as a 6-class classifier on the training identities for
  the same wall-clock budget, its pooled last feature map L2-normalised;
- triplet embeddings: `ninshiki verify train --model triplet_resnet20` (batch-hard mining on P x K batches)
  for the same budget, then `ninshiki verify val` of its last weights. The issue's protocol trains on all 6
  training classes, so the run holds no validation identities out (`--val-fraction 0`); without validation
  best.safetensors is the last weights, and nothing is selected on the test identities.

    python benchmarks/verify.py                  # the table of RESULTS.md
    python benchmarks/verify.py --seconds 120
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine

from ninshiki.cli import main as ninshiki

TEST_CLASSES = "6,7,8,9"
KEYS = ("auc", "eer", "tar@far=1e-2", "tar@far=1e-3", "best_acc", "rank1")


def score(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The metrics `verify val` reports, on the pairs it draws (same function, same seed)."""
    from ninshiki.api.verify_eval import generate_pairs
    from ninshiki.engine.verify_loop import rank_metrics, score_pairs
    from ninshiki.metrics.verification import VerificationMetric

    pairs = generate_pairs(labels, per_fold=300, folds=10, seed=0)
    scores, _ = score_pairs(embeddings, pairs)
    metric = VerificationMetric(num_folds=10)
    metric.update(scores, pairs.same, pairs.fold)
    return {**metric.compute(), **rank_metrics(embeddings, labels)}


def test_side():
    from ninshiki.api.verify_eval import load_verify_data

    data = load_verify_data("fashion-mnist", test_classes=TEST_CLASSES, test_fraction=None)
    return data.test.split.images, data.test.labels


def softmax_features(test_images: torch.Tensor, seconds: float) -> np.ndarray:
    """Train resnet20 with cross-entropy on the training identities for `seconds`; pooled features of the test."""
    from ninshiki.api.verify_split import load_train_data
    from ninshiki.engine.batches import Normalizer
    from ninshiki.models.weights import create_model

    train = load_train_data("fashion-mnist", test_classes=TEST_CLASSES, test_fraction=None, val_classes=None,
                            val_fraction=0.0).train           # all 6 training classes, as the triplet run's
    labels = train.labels.clone()
    codes = {c: i for i, c in enumerate(sorted(set(labels.tolist())))}
    labels = torch.tensor([codes[c] for c in labels.tolist()])
    normalizer = Normalizer.fit(train.images)
    model = create_model("resnet20", num_classes=len(codes), in_channels=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    generator, start, steps = torch.Generator().manual_seed(0), time.perf_counter(), 0
    model.train()
    while time.perf_counter() - start < seconds:
        index = torch.randint(len(labels), (128,), generator=generator)
        loss = F.cross_entropy(model(normalizer(train.images[index])), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    print(f"softmax resnet20: {steps} steps of 128 in {time.perf_counter() - start:.0f} s", flush=True)
    model.eval()
    with torch.inference_mode():
        features = [model.forward_features(normalizer(chunk))[-1].mean((2, 3)) for chunk in test_images.split(500)]
    return F.normalize(torch.cat(features), dim=1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/verify"))
    parser.add_argument("--seconds", type=float, default=240, help="training budget of each trained embedding")
    # With only 6 training identities, P = 6; K = 16 gives 96-image batches (K = 4, 24 images, did worse), and
    # short epochs let the time limit's re-planning use the whole budget.
    parser.add_argument("--triplet-flags", default="--k 16 --batches-per-epoch 100")
    args = parser.parse_args()
    print(describe_machine())
    torch.manual_seed(0)
    images, labels = test_side()
    rows = [{"embedding": "raw pixels", "train_s": 0.0,
             **score(F.normalize(images.flatten(1).float(), dim=1).numpy(), labels)}]
    rows.append({"embedding": "softmax resnet20 features", "train_s": args.seconds,
                 **score(softmax_features(images, args.seconds), labels)})
    triplet = args.out / "triplet"
    if ninshiki(["verify", "train", "--data", "fashion-mnist", "--test-classes", TEST_CLASSES, "--val-fraction", "0",
                 "--model", "triplet_resnet20", "--time-limit", str(args.seconds), "--device", "cpu",
                 *args.triplet_flags.split(), "--out", str(triplet)]):
        raise SystemExit("verify train failed")
    if ninshiki(["verify", "val", "--data", "fashion-mnist", "--test-classes", TEST_CLASSES, "--weights",
                 str(triplet / "last.safetensors"), "--out", str(args.out / "triplet_val")]):
        raise SystemExit("verify val failed")
    trained = json.loads((triplet / "metrics.json").read_text())
    rows.append({"embedding": "triplet resnet20 (batch-hard)", "train_s": trained.get("train_time_s", args.seconds),
                 **json.loads((args.out / "triplet_val" / "metrics.json").read_text())})
    print("\n| embedding | train s | " + " | ".join(KEYS) + " |\n|---|---:|" + "---:|" * len(KEYS))
    for row in rows:
        print(f"| {row['embedding']} | {row['train_s']:.0f} | " + " | ".join(f"{row[k]:.4f}" for k in KEYS) + " |")


if __name__ == "__main__":
    main()
