"""Local features on real photo pairs with known homographies: SIFT, RootSIFT and our LIFT.

Pairs: OpenCV's Oxford pair graf1 -> graf3 (its published homography) and real photos that LIFT never
trained on (`lift_pairs.OPENCV_HELD_OUT_PHOTOS`) warped by random homographies with photometric changes
(`ninshiki match pairs`). LIFT is trained first (`ninshiki match train`, `--lift-seconds`) on the other photos.
Every extractor keeps its 2,000 strongest keypoints; matches pass Lowe's ratio test (0.8) and mutual nearest
neighbours; a match is correct within 3 px of where the true homography puts it; homography accuracy is the
share of pairs whose RANSAC homography moves the image corners by less than 3 px on average.

    python benchmarks/match.py                  # the table of RESULTS.md
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine

from ninshiki.cli import main as ninshiki

KEYS = ("matching_precision", "mma@1", "mma@3", "mma@5", "homography_acc@3", "repeatability", "mean_matches",
        "seconds_per_pair")


def run(*args: str) -> None:
    if ninshiki(list(args)) != 0:
        raise SystemExit(f"ninshiki {' '.join(args)} failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/match"))
    parser.add_argument("--pairs", type=int, default=24, help="warped pairs of the held-out photos")
    parser.add_argument("--lift-seconds", type=float, default=600)
    args = parser.parse_args()
    print(describe_machine())
    from ninshiki.data.sample_photos import opencv_sample
    from ninshiki.models.match.lift_pairs import OPENCV_HELD_OUT_PHOTOS

    held_out = args.out / "held_out_photos.txt"
    held_out.parent.mkdir(parents=True, exist_ok=True)
    pairs = args.out / "pairs"
    if not pairs.exists():
        photos = args.out / "photos"
        photos.mkdir(exist_ok=True)
        for name in OPENCV_HELD_OUT_PHOTOS:
            target = photos / name
            if not target.exists():
                target.symlink_to(opencv_sample(name))
        run("match", "pairs", "--photos", str(photos), "--out", str(pairs), "--count", str(args.pairs))
    lift = args.out / "lift"
    if not (lift / "best.safetensors").exists():
        start = time.perf_counter()
        run("match", "train", "--model", "lift", "--time-limit", str(args.lift_seconds), "--out", str(lift))
        print(f"LIFT trained in {time.perf_counter() - start:.0f} s", flush=True)
    rows = []
    for pair_set, where in (("opencv-doc", "graf1 -> graf3"), (str(pairs), f"{args.pairs} warped held-out photos")):
        for model in ("sift", "rootsift", "lift"):
            out = args.out / f"eval_{model}_{'graf' if pair_set == 'opencv-doc' else 'warped'}"
            weights = ["--weights", str(lift / "best.safetensors")] if model == "lift" else []
            run("match", "eval", "--model", model, *weights, "--pairs", pair_set, "--out", str(out))
            metrics = json.loads((out / "metrics.json").read_text())
            rows.append({"pairs": where, "model": model, **{k: metrics[k] for k in KEYS}})
    header = "| " + " | ".join(rows[0]) + " |"
    print("\n" + header + "\n|" + "|".join("---" for _ in rows[0]) + "|")
    for row in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
