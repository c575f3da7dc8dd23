"""High-dimensional Gaussian filtering on the permutohedral lattice, in pure PyTorch.

Adams, Baek, Davis, "Fast High-Dimensional Filtering Using the Permutohedral Lattice", Eurographics 2010;
used by the dense CRF of Krähenbühl & Koltun (NIPS 2011) and by CRF-as-RNN (Zheng et al., ICCV 2015).

Given features f (N, d), already divided by the kernel's standard deviations, and values v (N, c), the
filter approximates

    out_i = sum_j exp(-|f_i - f_j|^2 / 2) v_j            (the self term j = i included)

in O(N d^2 + M d c) instead of O(N^2 c): each point is splatted onto the d+1 vertices of its enclosing
simplex with barycentric weights, the lattice is blurred with [1/2 1 1/2] along each of its d+1 directions,
and the result is sliced back with the same weights. Scale, exactly as the reference code (Krähenbühl's
`permutohedral.cpp`, copied into CRF-RNN's `modified_permutohedral.cpp`, ported loop for loop in the tests):
features are multiplied by sqrt(2/3) (d+1) so that the blur's standard deviation is one feature unit, and the
output by alpha = 1 / (1 + 2^-d), the inverse of the blur's central coefficient on a fully populated lattice.
That is not the Gaussian sum's scale: on image crops the output is 0.43-0.56 of the exact sum on average,
varying by 7-17% from pixel to pixel (tests and benchmarks/crf_filter.py). The reference's users divide by
the filtered ones, out(v) / out(1), which cancels most of it (0.4-6% relative error left); so does CRF-RNN here.

`PermutohedralLattice` is built once per set of features, vectorised (no loop over points: vertex keys are
packed into int64 codes, found with one sort and `searchsorted`), as sparse CSR matrices for splat, blur and
slice, and then filters any number of value tensors. The filter is a linear operator whose transpose is the
same splat, the blur in the reverse direction order, and the slice (the reference's `reverse` flag): that is
its backward pass. Float32 throughout, even under autocast; CPU and CUDA alike.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor


class PermutohedralLattice:
    """The lattice of one or several point sets, as sparse matrices: splat (M, P), blur (M, M) per direction
    and slice (P, M), built once and applied to any number of value tensors.

    A batch of point sets shares one lattice whose vertex codes carry the batch index, so points of
    different sets never meet. Vertices are identified by their d integer coordinates packed into one int64
    (mixed radix, with a margin so that a blur step is a constant offset of the code); features whose
    integer coordinates span too wide a range for 62 bits (far beyond any image's: thousands of standard
    deviations in every dimension) are refused with a clear error.

    Args:
        features: Per-point features divided by the kernel's standard deviations.

    Shape:
        - features: (N, d) or (B, N, d). `filter` takes values (N, c) or (B, N, c) accordingly.
    """

    def __init__(self, features: Tensor) -> None:
        if features.dim() not in (2, 3) or features.shape[-1] < 1 or features.shape[-2] < 1:
            raise ValueError(f"features must be (N, d) or (B, N, d) with N, d >= 1, got {tuple(features.shape)}")
        if not torch.isfinite(features).all():
            raise ValueError("features contain NaN or infinite values")
        self.batched = features.dim() == 3
        batch = features.reshape(-1, *features.shape[-2:])    # (B, N, d)
        self.shape = tuple(batch.shape[:2])
        self.dim = batch.shape[-1]
        self.alpha = 1.0 / (1.0 + 2.0 ** -self.dim)
        with torch.no_grad(), torch.autocast(features.device.type, enabled=False), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            self._build(batch.float())

    def _build(self, features: Tensor) -> None:
        b, n, d = features.shape
        device = features.device
        elevated = _elevate(features.reshape(b * n, d))                   # (P, d+1), P = B N
        rem0, rank = _enclosing_simplex(elevated)                         # (P, d+1) each
        weights = _barycentric(elevated, rem0, rank)                      # (P, d+1)
        batch_ids = torch.arange(b, device=device).repeat_interleave(n)   # (P,)
        codes, steps = _vertex_codes(rem0, rank, batch_ids)               # (P, d+1), (d+1,)
        sorted_codes, order = torch.sort(codes.view(-1), stable=True)     # (P (d+1),)
        vertices, counts = torch.unique_consecutive(sorted_codes, return_counts=True)   # (M,)
        m, p = vertices.shape[0], b * n
        self.num_vertices = m
        offsets = torch.empty_like(order)
        offsets[order] = torch.repeat_interleave(torch.arange(m, device=device), counts)
        offsets = offsets.view(p, d + 1)                                  # (P, d+1) vertex of each corner
        crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        self._splat = _csr(crow, order // (d + 1), weights.view(-1)[order], (m, p))
        cols, slots = torch.sort(offsets, dim=1)
        crow = torch.arange(0, p * (d + 1) + 1, d + 1, device=device)
        self._slice = _csr(crow, cols.reshape(-1), weights.gather(1, slots).reshape(-1), (p, m))
        self._blur = [_blur_matrix(vertices, steps[j]) for j in range(d + 1)]

    def filter(self, values: Tensor) -> Tensor:
        """The Gaussian filter of `values` over the lattice's points; differentiable w.r.t. `values`.

        Shape:
            - values: (N, c), or (B, N, c) for a batched lattice. Output: the same shape, float32 (float64
              values stay float64, for gradient checks).
        """
        expected = self.shape if self.batched else self.shape[1:]
        if values.dim() != len(expected) + 1 or tuple(values.shape[:-1]) != expected:
            raise ValueError(f"values {tuple(values.shape)} do not match the lattice's points {expected} + (c,)")
        with torch.autocast(values.device.type, enabled=False):
            dtype = torch.float64 if values.dtype == torch.float64 else torch.float32
            flat = values.to(dtype).reshape(-1, values.shape[-1])         # (B N, c)
            out = _LatticeFilter.apply(flat, self, False)
        return out.view(*values.shape)

    def _compute(self, values: Tensor, reverse: bool) -> Tensor:
        """Splat, blur along the d+1 directions (in reverse order for the transpose), slice.

        Shape:
            - values: (P, c). Output: (P, c).
        """
        def mm(matrix: Tensor, dense: Tensor) -> Tensor:
            return matrix.to(dense.dtype) @ dense if dense.dtype != matrix.dtype else matrix @ dense

        lattice = mm(self._splat, values)                                 # (M, c)
        for blur in (self._blur[::-1] if reverse else self._blur):
            lattice = mm(blur, lattice)                                   # (M, c)
        return mm(self._slice, lattice) * self.alpha                      # (P, c)


class _LatticeFilter(torch.autograd.Function):
    """The lattice filter with its exact transpose (reversed blur order) as the backward pass."""

    @staticmethod
    def forward(ctx, values: Tensor, lattice: PermutohedralLattice, reverse: bool) -> Tensor:  # type: ignore[override]
        ctx.lattice, ctx.reverse = lattice, reverse
        return lattice._compute(values, reverse)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        with torch.autocast(grad.device.type, enabled=False):   # backward may run under autocast too
            return _LatticeFilter.apply(grad.contiguous(), ctx.lattice, not ctx.reverse), None, None


def _csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


def _elevate(features: Tensor) -> Tensor:
    """Scaled features embedded in the hyperplane sum(x) = 0 of R^(d+1) (y = E p, Adams et al. p. 5).

    Shape:
        - features: (P, d). Output: (P, d+1).
    """
    d = features.shape[1]
    i = torch.arange(d, device=features.device, dtype=torch.float64)
    scale = (math.sqrt(2.0 / 3.0) * (d + 1) / torch.sqrt((i + 1) * (i + 2))).float()
    cf = features * scale                                                 # (P, d)
    suffix = torch.flip(torch.cumsum(torch.flip(cf, [1]), 1), [1])       # (P, d): sum_{k >= j} cf_k
    tail = torch.cat([suffix[:, 1:], cf.new_zeros(cf.shape[0], 1)], 1)    # (P, d): sum_{k > j} cf_k
    j = torch.arange(1, d + 1, device=features.device, dtype=features.dtype)
    return torch.cat([suffix[:, :1], tail - j * cf], dim=1)               # (P, d+1)


def _enclosing_simplex(elevated: Tensor) -> tuple[Tensor, Tensor]:
    """The nearest remainder-0 lattice point and the rank ordering of the residual (Adams et al. p. 10).

    Shape:
        - elevated: (P, d+1). Output: rem0 (P, d+1) int64 multiples of d+1, rank (P, d+1) int64 in [0, d].
    """
    d1 = elevated.shape[1]
    v = elevated / d1
    up, down = torch.ceil(v) * d1, torch.floor(v) * d1
    rem0 = torch.where(up - elevated < elevated - down, up, down)        # (P, d+1), ties round down
    total = (rem0.sum(1) / d1).round().long()                             # (P,)
    # rank_i = #{j: r_j > r_i} + #{j < i: r_j = r_i}: the reference's pairwise loop, vectorised over points.
    residual = (elevated - rem0).unbind(1)
    counts = [torch.zeros_like(total) for _ in range(d1)]
    for i in range(d1):
        for j in range(i + 1, d1):
            later_greater = (residual[i] < residual[j]).long()
            counts[i] += later_greater
            counts[j] += 1 - later_greater
    rank = torch.stack(counts, 1) + total.unsqueeze(1)                    # (P, d+1)
    rem0 = rem0.long()
    rem0 = rem0 + d1 * (rank < 0).long() - d1 * (rank > d1 - 1).long()
    rank = rank % d1
    return rem0, rank


def _barycentric(elevated: Tensor, rem0: Tensor, rank: Tensor) -> Tensor:
    """Barycentric weights of the point on its simplex's d+1 vertices (they sum to one).

    Shape:
        - elevated, rem0, rank: (P, d+1). Output: (P, d+1) float32.
    """
    p, d1 = elevated.shape
    v = (elevated - rem0) / d1                                            # (P, d+1)
    bary = elevated.new_zeros(p, d1 + 1)
    bary.scatter_add_(1, d1 - 1 - rank, v)
    bary.scatter_add_(1, d1 - rank, -v)
    bary[:, 0] += 1.0 + bary[:, d1]                                       # wrap around
    return bary[:, :d1].contiguous()


def _vertex_codes(rem0: Tensor, rank: Tensor, batch_ids: Tensor) -> tuple[Tensor, Tensor]:
    """One int64 code per simplex vertex of every point, and the code offset of a blur step per direction.

    Vertex r of a point's simplex has coordinates rem0 + r - (d+1) [rank > d - r] (the canonical simplex,
    permuted and shifted); the last of its d+1 coordinates is minus the sum of the others, so the first d
    and the batch id identify it. A step along direction j < d adds d to coordinate j and subtracts 1 from the
    others; along direction d it subtracts 1 from all d. The margins keep every digit of a vertex and its
    neighbours inside its radix, so codes are order preserving and a step never carries.

    Shape:
        - rem0, rank: (P, d+1) int64; batch_ids: (P,). Output: codes (P, d+1), steps (d+1,), int64.
    """
    d = rem0.shape[1] - 1
    lo = rem0[:, :d].min(0).values - 2 * (d + 1)                          # (d,)
    spans = (rem0[:, :d].max(0).values + 2 * (d + 1) - lo + 1).tolist()
    spans.append(int(batch_ids[-1]) + 1)
    if math.prod(spans) >= 2 ** 62:
        raise ValueError(f"features span too wide a range for the lattice's 62-bit vertex codes (integer spans "
                         f"{spans}); divide them by larger standard deviations")
    radix = torch.tensor([math.prod(spans[i + 1:]) for i in range(d + 1)], device=rem0.device)   # (d+1,)
    base = ((rem0[:, :d] - lo) * radix[:d]).sum(1) + batch_ids * radix[d]   # (P,) code of rem0
    # Corner r subtracts (d+1) radix_i from every coordinate i of rank > d - r: a suffix sum over ranks.
    by_rank = torch.zeros_like(rem0).scatter_(1, rank, torch.cat([radix[:d], radix.new_zeros(1)]).expand_as(rank))
    above = torch.cumsum(by_rank.flip(1), 1)                              # (P, d+1): ranks d-r .. d, summed
    shift = torch.cat([above.new_zeros(above.shape[0], 1), above[:, :d]], 1)   # (P, d+1): ranks > d - r
    r = torch.arange(d + 1, device=rem0.device)
    codes = base.unsqueeze(1) + r * radix[:d].sum() - (d + 1) * shift     # (P, d+1)
    step = -torch.ones(d + 1, d, dtype=torch.long, device=rem0.device)
    step[torch.arange(d), torch.arange(d)] = d                            # (d+1 directions, d coordinates)
    return codes, (step * radix[:d]).sum(1)                              # no int64 matmul on CUDA


def _blur_matrix(vertices: Tensor, step: int | Tensor) -> Tensor:
    """I + (N1 + N2) / 2 for the neighbours one step back and forward along one direction (absent: no entry).

    Shape:
        - vertices: (M,) sorted distinct codes. Output: (M, M) sparse CSR with at most 3 entries per row.
    """
    m = vertices.shape[0]
    queries = torch.stack([vertices - step, vertices + step], dim=1)      # (M, 2)
    pos = torch.searchsorted(vertices, queries).clamp_(max=m - 1)
    found = vertices[pos] == queries                                      # (M, 2)
    cols = torch.cat([torch.arange(m, device=vertices.device).unsqueeze(1), torch.where(found, pos, m)], 1)
    cols, _ = torch.sort(cols, dim=1)                                     # (M, 3); absent (= m) sort last
    values = torch.where(cols == torch.arange(m, device=vertices.device).unsqueeze(1), 1.0, 0.5)
    keep = cols < m
    crow = torch.cat([keep.new_zeros(1, dtype=torch.long), keep.sum(1).cumsum(0)])
    return _csr(crow, cols[keep], values[keep], (m, m))


def dense_gaussian_filter(features: Tensor, values: Tensor) -> Tensor:
    """The exact filter out_i = sum_j exp(-|f_i - f_j|^2 / 2) v_j, O(N^2): the reference for tests.

    Shape:
        - features: (N, d); values: (N, c). Output: (N, c), in the dtype of `values` (float64 stays so).
    """
    dtype = torch.promote_types(values.dtype, torch.float32)
    f = features.to(dtype)
    sq = (f.unsqueeze(1) - f.unsqueeze(0)).pow(2).sum(-1)                # (N, N)
    return torch.exp(-0.5 * sq) @ values.to(dtype)
