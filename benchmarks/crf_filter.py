"""The permutohedral-lattice filter against the exact dense Gaussian filter, and the CRF-RNN layer's time.

Table 1: bilateral features of crops of skimage's astronaut and coffee images (positions / theta_alpha, RGB
0-255 / theta_beta), theta_beta = 13 as the paper and theta_alpha = 80 scaled to the crop (80 * size / 320, so
the spatial reach relative to the crop is that of the paper's value on a 320-pixel image: not trivially
local), and one set of random 5-D features (uniform in [0, 4)^5). Values: the image's own colours (smooth)
and uniform noise. Columns:

- scale: mean of lattice(1) / exact(1), the lattice's raw scale (the reference code's; see permutohedral.py).
- raw rel L2: |lattice(v) - exact(v)| / |exact(v)| without normalisation.
- norm rel L2, norm max abs: the same for lattice(v) / lattice(1) against exact(v) / exact(1), the normalised
  filter CRF-RNN uses (values in [0, 1], so the max abs error is in value units).
- lattice ms (build + one filter), dense ms (the O(N^2) filter).

Table 2: `MeanFieldCRF` on one 320 x 320 crop of the astronaut, 9 classes, random unaries, 5 iterations
(training mode): the lattice build, a forward pass without gradients and a forward + backward pass; median
of --repeats after one warm-up.

    python benchmarks/crf_filter.py                 # about 30 s on 2 idle CPU threads
    python benchmarks/crf_filter.py --threads 1 --device cuda

On cores shared with other busy processes, OpenMP's spinning threads wait on each other: 2 threads then ran
2-4x slower than 1 here, and OMP_WAIT_POLICY=PASSIVE recovered most of it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from skimage import data

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine

from ninshiki.models.segment.crf_rnn import MeanFieldCRF, bilateral_features
from ninshiki.models.segment.permutohedral import PermutohedralLattice, dense_gaussian_filter


def milliseconds(fn: Callable[[], object], device: str, repeats: int = 3) -> float:
    """Median wall time of `fn` after one warm-up call, synchronising CUDA."""
    fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def crop(image: np.ndarray, size: int, device: str) -> torch.Tensor:
    """A central size x size crop as (1, 3, size, size) RGB in [0, 1]."""
    y0, x0 = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    pixels = torch.from_numpy(image[y0:y0 + size, x0:x0 + size].copy()).permute(2, 0, 1).float() / 255
    return pixels[None].to(device)


def filter_row(name: str, features: torch.Tensor, values: torch.Tensor, device: str) -> str:
    n = features.shape[0]
    ones = torch.ones(n, 1, device=device)
    lattice = PermutohedralLattice(features)
    approx, exact = lattice.filter(values), dense_gaussian_filter(features, values)
    approx_ones, exact_ones = lattice.filter(ones), dense_gaussian_filter(features, ones)
    normalised, exact_normalised = approx / approx_ones, exact / exact_ones
    raw_error = ((approx - exact).norm() / exact.norm()).item()
    norm_error = ((normalised - exact_normalised).norm() / exact_normalised.norm()).item()
    max_abs = (normalised - exact_normalised).abs().max().item()
    scale = (approx_ones / exact_ones).mean().item()
    lattice_ms = milliseconds(lambda: PermutohedralLattice(features).filter(values), device, repeats=2)
    dense_ms = milliseconds(lambda: dense_gaussian_filter(features, values), device, repeats=2)
    return (f"| {name} | {n} | {lattice.num_vertices} | {scale:.3f} | {raw_error:.4f} | {norm_error:.4f} | "
            f"{max_abs:.4f} | {lattice_ms:.1f} | {dense_ms:.1f} |")


def filter_table(device: str) -> None:
    print("| case | N | vertices | scale | raw rel L2 | norm rel L2 | norm max abs | lattice ms | dense ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    generator = torch.Generator().manual_seed(0)
    for image_name in ("astronaut", "coffee"):
        image = getattr(data, image_name)()
        for size in (24, 32, 48):
            pixels = crop(image, size, device)
            theta_alpha = 80.0 * size / 320
            features = bilateral_features(pixels, theta_alpha, 13.0)[0]                 # (N, 5)
            colours = pixels.flatten(2)[0].T.contiguous()                                # (N, 3)
            noise = torch.rand(size * size, 3, generator=generator).to(device)
            for values_name, values in (("colours", colours), ("noise", noise)):
                name = f"{image_name} {size}px, theta_alpha {theta_alpha:g}, {values_name}"
                print(filter_row(name, features, values, device))
    features = (torch.rand(2304, 5, generator=generator) * 4).to(device)
    values = torch.rand(2304, 3, generator=generator).to(device)
    print(filter_row("random 5-D features in [0, 4)^5, noise", features, values, device))


def crf_table(device: str, repeats: int) -> None:
    image = crop(data.astronaut(), 320, device)
    unary = torch.randn(1, 9, 320, 320, device=device, generator=torch.Generator(device).manual_seed(0))
    crf = MeanFieldCRF(num_classes=9, iterations=5).to(device).train()

    def forward() -> None:
        with torch.no_grad():
            crf(unary, image)

    def forward_backward() -> None:
        crf(unary.requires_grad_(), image).square().mean().backward()

    build = milliseconds(lambda: PermutohedralLattice(bilateral_features(image, 80.0, 13.0)), device, repeats)
    print("| 320 x 320, 9 classes, 5 iterations | ms per image |")
    print("|---|---|")
    print(f"| lattice build (once per image per forward) | {build:.0f} |")
    print(f"| forward (no gradients) | {milliseconds(forward, device, repeats):.0f} |")
    print(f"| forward + backward | {milliseconds(forward_backward, device, repeats):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of the CRF (median reported)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe_machine(args.device))
    print(f"load average before the run: {os.getloadavg()[0]:.2f} (other processes share the cores)")
    print()
    filter_table(args.device)
    print()
    crf_table(args.device, args.repeats)


if __name__ == "__main__":
    main()
