"""The permutohedral-lattice filter: equal to a line-by-line port of the reference code, close to the exact dense
Gaussian filter after the normalisation CRF-RNN applies, linear with an exact transpose as its gradient."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data

from ninshiki.models.segment.permutohedral import PermutohedralLattice, dense_gaussian_filter


def reference_filter(features: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A slow, loop-for-loop port of Krähenbühl's `permutohedral.cpp` (init, then seqCompute without `reverse`),
    with a dict for the hash table: the ground truth of what the lattice computes, scale included."""
    d = features.shape[1]
    canonical = [[i if j <= d - i else i - (d + 1) for j in range(d + 1)] for i in range(d + 1)]
    scale = [math.sqrt(2.0 / 3.0) * (d + 1) / math.sqrt((i + 1) * (i + 2)) for i in range(d)]
    table: dict[tuple[int, ...], int] = {}
    offsets, weights = [], []
    for f in features:
        elevated, sm = [0.0] * (d + 1), 0.0
        for j in range(d, 0, -1):
            cf = f[j - 1] * scale[j - 1]
            elevated[j] = sm - j * cf
            sm += cf
        elevated[0] = sm
        rem0, total = [], 0
        for e in elevated:
            up, down = math.ceil(e / (d + 1)) * (d + 1), math.floor(e / (d + 1)) * (d + 1)
            rem0.append(up if up - e < e - down else down)
            total += rem0[-1] // (d + 1)
        rank = [0] * (d + 1)
        for i in range(d):
            for j in range(i + 1, d + 1):
                if elevated[i] - rem0[i] < elevated[j] - rem0[j]:
                    rank[i] += 1
                else:
                    rank[j] += 1
        for i in range(d + 1):
            rank[i] += total
            if rank[i] < 0:
                rank[i], rem0[i] = rank[i] + d + 1, rem0[i] + d + 1
            elif rank[i] > d:
                rank[i], rem0[i] = rank[i] - d - 1, rem0[i] - d - 1
        bary = [0.0] * (d + 2)
        for i in range(d + 1):
            v = (elevated[i] - rem0[i]) / (d + 1)
            bary[d - rank[i]] += v
            bary[d - rank[i] + 1] -= v
        bary[0] += 1.0 + bary[d + 1]
        for r in range(d + 1):
            key = tuple(rem0[i] + canonical[r][rank[i]] for i in range(d))
            offsets.append(table.setdefault(key, len(table)))
            weights.append(bary[r])
    keys = list(table)
    lattice = np.zeros((len(keys), values.shape[1]))
    for k, (o, w) in enumerate(zip(offsets, weights)):
        lattice[o] += w * values[k // (d + 1)]
    for j in range(d + 1):
        blurred = lattice.copy()
        for i, key in enumerate(keys):
            for sign in (1, -1):
                neighbour = tuple(key[a] + sign * (d if a == j else -1) for a in range(d))
                if neighbour in table:
                    blurred[i] += 0.5 * lattice[table[neighbour]]
        lattice = blurred
    alpha = 1.0 / (1.0 + 2.0 ** -d)
    out = np.zeros_like(values, dtype=np.float64)
    for k, (o, w) in enumerate(zip(offsets, weights)):
        out[k // (d + 1)] += w * lattice[o] * alpha
    return out


def image_features(size: int, theta_alpha: float, theta_beta: float, corner: tuple[int, int] = (180, 200)) -> torch.Tensor:
    """Bilateral features of a crop of skimage's astronaut: (x, y) / theta_alpha, RGB 0-255 / theta_beta."""
    y0, x0 = corner
    rgb = torch.from_numpy(data.astronaut()[y0:y0 + size, x0:x0 + size].copy()).float()   # (S, S, 3)
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    return torch.cat([torch.stack([xs, ys], -1) / theta_alpha, rgb / theta_beta], -1).view(-1, 5)


@pytest.mark.parametrize("d", [1, 3, 5])
def test_equals_the_reference_algorithm(d: int) -> None:
    generator = torch.Generator().manual_seed(d)
    features = torch.rand(60, d, generator=generator) * 4.0        # some points share vertices, some do not
    values = torch.rand(60, 2, generator=generator)
    expected = reference_filter(features.double().numpy(), values.double().numpy())
    out = PermutohedralLattice(features).filter(values)
    # Only float32 rounding separates the two (the reference itself is float32 C++).
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_normalised_output_matches_the_dense_filter_on_an_image() -> None:
    # 32 x 32 crop, positions / 8 and colours / 13: kernels reach ~20 px, so the lattice is not trivially local.
    features = image_features(32, theta_alpha=8.0, theta_beta=13.0)
    values = torch.rand(features.shape[0], 3, generator=torch.Generator().manual_seed(0))
    lattice = PermutohedralLattice(features)
    approx = lattice.filter(values) / lattice.filter(torch.ones(features.shape[0], 1))
    exact = dense_gaussian_filter(features, values) / dense_gaussian_filter(features, torch.ones(features.shape[0], 1))
    # Measured relative L2 error 0.0195 here (0.004-0.056 over 36 crops, sizes 16-32 and widths (4, 6)-(80, 13),
    # the narrowest widths worst): the lattice's own approximation. 0.03 is a 50% margin over this case.
    assert ((approx - exact).norm() / exact.norm()).item() < 0.03


def test_raw_output_is_the_reference_scale_of_the_gaussian_sum() -> None:
    features = image_features(24, theta_alpha=8.0, theta_beta=13.0)
    ones = torch.ones(features.shape[0], 1)
    ratio = PermutohedralLattice(features).filter(ones) / dense_gaussian_filter(features, ones)
    # Unnormalised, the reference lattice gives about half the exact sum, and only roughly a constant fraction
    # of it: measured mean 0.530 and coefficient of variation 0.111 here; over 36 crops, sizes 16-32 and widths
    # (4, 6)-(80, 13): means 0.43-0.56, variations 0.07-0.17. Normalising by the filtered ones cancels most of it.
    assert 0.45 < ratio.mean().item() < 0.6
    assert (ratio.std() / ratio.mean()).item() < 0.15


def test_constant_values_stay_proportional() -> None:
    features = image_features(16, theta_alpha=4.0, theta_beta=10.0)
    lattice = PermutohedralLattice(features)
    norm = lattice.filter(torch.ones(features.shape[0], 1))
    constant = torch.tensor([0.25, 1.0, 3.0]).expand(features.shape[0], 3)
    torch.testing.assert_close(lattice.filter(constant), norm * constant, rtol=1e-6, atol=0.0)
    assert (norm > 0).all()


def test_gradient_is_the_exact_transpose() -> None:
    generator = torch.Generator().manual_seed(1)
    lattice = PermutohedralLattice(torch.rand(25, 3, generator=generator) * 3.0)
    values = torch.rand(25, 2, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(lattice.filter, (values,))
    assert torch.autograd.gradgradcheck(lattice.filter, (values,))


def test_gradient_matches_the_dense_filter() -> None:
    # The gradient of the normalised filter (what CRF-RNN back-propagates through) against the exact one's.
    features = image_features(24, theta_alpha=8.0, theta_beta=13.0)
    n = features.shape[0]
    lattice = PermutohedralLattice(features)
    weights = torch.rand(n, 2, generator=torch.Generator().manual_seed(2))
    values = torch.rand(n, 2, generator=torch.Generator().manual_seed(3))
    grads = []
    for approx in (True, False):
        v = values.clone().requires_grad_()
        filtered = lattice.filter if approx else lambda x: dense_gaussian_filter(features, x)
        ((filtered(v) / filtered(torch.ones(n, 1))) * weights).sum().backward()
        grads.append(v.grad)
    # Measured relative L2 error 0.069 here (0.047-0.092 over 18 crops, sizes 16-32 and widths (4, 6)-(80, 13)):
    # larger than the forward pass's 0.025 because the backward pass applies the lattice's transpose to
    # w / norm, where its per-pixel scale error no longer cancels against the norm. 0.09 is a 30% margin.
    assert ((grads[0] - grads[1]).norm() / grads[1].norm()).item() < 0.09


def test_batched_lattice_equals_separate_lattices() -> None:
    features = torch.stack([image_features(12, 4.0, 10.0, corner=c) for c in [(180, 200), (300, 100)]])
    values = torch.rand(2, 144, 3)
    batched = PermutohedralLattice(features).filter(values)
    for i in range(2):
        torch.testing.assert_close(batched[i], PermutohedralLattice(features[i]).filter(values[i]))


def test_dense_filter_is_the_gaussian_sum() -> None:
    features = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    out = dense_gaussian_filter(features, torch.tensor([[1.0], [10.0]]))
    expected = torch.tensor([[1.0 + 10.0 * math.exp(-2.5)], [math.exp(-2.5) + 10.0]])
    torch.testing.assert_close(out, expected)


def test_float32_under_autocast() -> None:
    features = image_features(8, 4.0, 10.0)
    lattice = PermutohedralLattice(features)
    values = torch.rand(64, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lattice.filter(values.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, lattice.filter(values.bfloat16().float()))


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        PermutohedralLattice(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        PermutohedralLattice(torch.zeros(3))
    with pytest.raises(ValueError, match="do not match"):
        PermutohedralLattice(torch.zeros(4, 2)).filter(torch.zeros(5, 1))
    with pytest.raises(ValueError, match="too wide"):
        PermutohedralLattice(torch.tensor([[0.0] * 8, [1e4] * 8]))
