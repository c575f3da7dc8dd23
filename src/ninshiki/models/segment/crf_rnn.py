"""CRF-as-RNN: mean-field inference in a fully connected CRF, unrolled as recurrent layers on a segmenter.

Zheng, Jayasumana, Romera-Paredes, Vineet, Su, Du, Huang, Torr, "Conditional Random Fields as Recurrent
Neural Networks", ICCV 2015; the dense CRF of Krähenbühl & Koltun, "Efficient Inference in Fully Connected
CRFs with Gaussian Edge Potentials", NIPS 2011.

One mean-field iteration, as the released Caffe code (`meanfield_iteration.cpp`) computes it:

    Q        = softmax(logits)                                      normalisation
    Q~_s     = G_spatial * Q   / G_spatial * 1                      message passing, spatial kernel
    Q~_b     = G_bilateral * Q / G_bilateral * 1                    message passing, bilateral kernel
    message  = W_s Q~_s + W_b Q~_b                                  weighting (K x K each, learned)
    logits   = unary - C message                                    compatibility transform, adding unaries

with G_spatial the Gaussian of pixel positions / theta_gamma and G_bilateral that of (positions / theta_alpha,
RGB in 0-255 / theta_beta). As in the released code, the self-contribution is not subtracted: both filters
include pixel i itself and each message is divided per pixel by the filter of ones (which includes it too),
so every message is a weighted average of the neighbourhood's Q. W_s and W_b start at 3 I and 5 I (the
released `spatial_filter_weight` / `bilateral_filter_weight`), C at -I: the Potts model up to a per-pixel
constant that softmax ignores. The bilateral filter runs on the permutohedral lattice (`permutohedral.py`),
built once per image per forward and reused by every iteration; the spatial filter is an exact separable
Gaussian convolution (banded sparse matrices along columns and rows, truncated at 5 sigma, where a 1-D tail
holds < 6e-7 of the weight), not the reference's second, approximate lattice. All of it in float32, even under autocast. The image features carry no gradient.

Defaults: theta_alpha=80, theta_beta=13, theta_gamma=3 (Krähenbühl & Koltun's settings; the released
CRF-RNN prototxt uses 160, 3, 3), 5 iterations in training and 10 in evaluation, as the paper.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from ninshiki.models.segment.common import SemanticSegmenter
from ninshiki.models.segment.permutohedral import PermutohedralLattice
from ninshiki.structures import SegmentationOutput

_EPS = 1e-20   # the released code's guard in 1 / (filtered ones + eps)


class GridGaussianFilter:
    """The exact Gaussian filter over an H x W pixel grid, out_i = sum_j exp(-|p_i - p_j|^2 / (2 sigma^2)) x_j.

    Separable: one banded (H, H) and one (W, W) sparse matrix, truncated at 5 sigma (a 1-D tail beyond
    holds < 6e-7 of the kernel's weight); pixels outside the image contribute nothing. The operator is
    symmetric, so its backward pass is the same filter.

    Args:
        height, width: The grid. sigma: Standard deviation, pixels. device: Where the matrices live.

    Shape:
        - `filter` takes x (B, H, W, C), channels last, and returns the same shape in float32.
    """

    def __init__(self, height: int, width: int, sigma: float, device: torch.device | str = "cpu") -> None:
        self.shape = (height, width)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            self._rows, self._cols = _gaussian_band(height, sigma, device), _gaussian_band(width, sigma, device)

    def filter(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:3]) != self.shape:
            raise ValueError(f"expected (B, {self.shape[0]}, {self.shape[1]}, C), got {tuple(x.shape)}")
        with torch.autocast(x.device.type, enabled=False):
            return _GridFilter.apply(x.float(), self)

    def _compute(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        y = self._rows @ x.permute(1, 0, 2, 3).reshape(h, b * w * c)                  # (H, B W C)
        y = y.view(h, b, w, c).permute(2, 1, 0, 3).reshape(w, b * h * c)              # (W, B H C)
        y = self._cols @ y
        return y.view(w, b, h, c).permute(1, 2, 0, 3).contiguous()                    # (B, H, W, C)


class _GridFilter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, grid: GridGaussianFilter) -> Tensor:  # type: ignore[override]
        ctx.grid = grid
        return grid._compute(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        with torch.autocast(grad.device.type, enabled=False):   # backward may run under autocast too
            return _GridFilter.apply(grad.float(), ctx.grid), None


def _gaussian_band(n: int, sigma: float, device: torch.device | str) -> Tensor:
    """The (n, n) sparse CSR matrix exp(-(i - j)^2 / (2 sigma^2)) for |i - j| <= 5 sigma."""
    radius = min(math.ceil(5 * sigma), n - 1)
    t = torch.arange(-radius, radius + 1, device=device)
    j = torch.arange(n, device=device).unsqueeze(1) + t                  # (n, 2r+1)
    keep = (j >= 0) & (j < n)
    weights = torch.exp(-0.5 * (t.float() / sigma) ** 2).expand(n, -1)  # peak 1, as exp(0)
    crow = torch.cat([keep.new_zeros(1, dtype=torch.long), keep.sum(1).cumsum(0)])
    return torch.sparse_csr_tensor(crow, j[keep], weights[keep], size=(n, n), check_invariants=False)


def bilateral_features(images: Tensor, theta_alpha: float, theta_beta: float) -> Tensor:
    """Per-pixel (x / theta_alpha, y / theta_alpha, R / theta_beta, G / theta_beta, B / theta_beta), RGB in 0-255.

    Shape:
        - images: (B, 3, H, W) RGB in [0, 1]. Output: (B, H W, 5), pixels in row-major order.
    """
    b, _, h, w = images.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=images.device, dtype=images.dtype),
                            torch.arange(w, device=images.device, dtype=images.dtype), indexing="ij")
    positions = torch.stack([xs, ys], -1).view(1, h * w, 2).expand(b, -1, -1) / theta_alpha   # (B, HW, 2)
    colours = images.flatten(2).transpose(1, 2) * (255.0 / theta_beta)                      # (B, HW, 3)
    return torch.cat([positions, colours], dim=-1)


class MeanFieldCRF(nn.Module):
    """The CRF-RNN layer: `iterations` mean-field steps of a dense CRF over unary logits and the image.

    Args:
        num_classes: Classes K, background included.
        iterations: Mean-field steps in training mode (the paper: 5, to keep gradients from vanishing).
        eval_iterations: Steps in evaluation mode (the paper: 10).
        theta_alpha: Standard deviation of the bilateral kernel's positions, pixels.
        theta_beta: Standard deviation of its colours, 0-255 intensities.
        theta_gamma: Standard deviation of the spatial kernel, pixels.
        spatial_weight: Initial diagonal of the spatial kernel's K x K weights.
        bilateral_weight: Initial diagonal of the bilateral kernel's K x K weights.
    """

    def __init__(self, *, num_classes: int, iterations: int = 5, eval_iterations: int = 10,
                 theta_alpha: float = 80.0, theta_beta: float = 13.0, theta_gamma: float = 3.0,
                 spatial_weight: float = 3.0, bilateral_weight: float = 5.0) -> None:
        super().__init__()
        if num_classes < 2 or iterations < 0 or eval_iterations < 0:
            raise ValueError(f"MeanFieldCRF needs num_classes >= 2 and iterations >= 0, got {num_classes}, "
                             f"{iterations}, {eval_iterations}")
        if min(theta_alpha, theta_beta, theta_gamma) <= 0:
            raise ValueError(f"kernel widths must be positive, got {theta_alpha}, {theta_beta}, {theta_gamma}")
        self.num_classes = num_classes
        self.iterations, self.eval_iterations = iterations, eval_iterations
        self.theta_alpha, self.theta_beta, self.theta_gamma = theta_alpha, theta_beta, theta_gamma
        eye = torch.eye(num_classes)
        self.spatial_ker_weights = nn.Parameter(spatial_weight * eye)
        self.bilateral_ker_weights = nn.Parameter(bilateral_weight * eye)
        self.compatibility_matrix = nn.Parameter(-eye)

    def forward(self, unary: Tensor, images: Tensor) -> Tensor:
        """Refined logits after the mean-field iterations (the unaries themselves after zero iterations).

        Shape:
            - unary: (B, K, H, W) logits; images: (B, 3, H, W) RGB in [0, 1]. Output: (B, K, H, W) float32.
        """
        b, k, h, w = unary.shape
        if k != self.num_classes or images.shape != (b, 3, h, w):
            raise ValueError(f"MeanFieldCRF({self.num_classes} classes) got unaries {tuple(unary.shape)} and images "
                             f"{tuple(images.shape)}; expected (B, {self.num_classes}, H, W) and (B, 3, H, W)")
        steps = self.iterations if self.training else self.eval_iterations
        with torch.autocast(unary.device.type, enabled=False):
            unary = unary.float().contiguous()
            features = bilateral_features(images.detach().float(), self.theta_alpha, self.theta_beta)
            lattice = PermutohedralLattice(features)                      # built once, used by every step
            grid = GridGaussianFilter(h, w, self.theta_gamma, unary.device)
            ones = unary.new_ones(b, h, w, 1)
            bilateral_norm = 1.0 / (lattice.filter(ones.view(b, h * w, 1)).view(b, h, w, 1) + _EPS)   # (B, H, W, 1)
            spatial_norm = 1.0 / (grid.filter(ones[:1]) + _EPS)                                      # (1, H, W, 1)
            # C (W_s Q~_s + W_b Q~_b) = (C W_s) Q~_s + (C W_b) Q~_b: two K x K products instead of three maps.
            compatibility = self.compatibility_matrix.float()
            spatial_mix = (compatibility @ self.spatial_ker_weights.float()).T                      # (K, K)
            bilateral_mix = (compatibility @ self.bilateral_ker_weights.float()).T                  # (K, K)
            logits = unary
            for _ in range(steps):
                # Softmax over dim 1 of (B, K, H, W) memory (PyTorch's CPU softmax over a last dim of K ~ 10 is
                # many times slower); the filters then work channels last.
                q = logits.softmax(dim=1).permute(0, 2, 3, 1).contiguous()                       # (B, H, W, K)
                spatial = grid.filter(q) * spatial_norm                                           # (B, H, W, K)
                bilateral = lattice.filter(q.view(b, h * w, k)).view(b, h, w, k) * bilateral_norm
                pairwise = spatial @ spatial_mix + bilateral @ bilateral_mix                      # (B, H, W, K)
                logits = unary - pairwise.permute(0, 3, 1, 2)                                     # (B, K, H, W)
        return logits

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, iterations={self.iterations}, eval_iterations="
                f"{self.eval_iterations}, theta_alpha={self.theta_alpha}, theta_beta={self.theta_beta}, "
                f"theta_gamma={self.theta_gamma}")


class CRFRefined(SemanticSegmenter):
    """A semantic segmenter followed by a CRF-RNN, trained end to end (Zheng et al. train FCN-8s + CRF).

    Parameters are `base.*` and `crf.*`, so a trained base model's state dict loads into `.base`. The base's
    auxiliary logits pass through unrefined (they only feed the auxiliary loss).

    Args:
        base: Any semantic segmenter (`Segmenter` contract).
        crf: The mean-field layer, with `crf.num_classes == base.num_classes`.
    """

    def __init__(self, *, base: SemanticSegmenter, crf: MeanFieldCRF) -> None:
        if crf.num_classes != base.num_classes:
            raise ValueError(f"the CRF has {crf.num_classes} classes, the base segmenter {base.num_classes}")
        super().__init__(num_classes=base.num_classes, input_size=base.input_size, ignore_index=base.ignore_index,
                         aux_weight=getattr(base, "aux_weight", 0.4))
        self.base = base
        self.crf = crf
        self.classifier_names = tuple(f"base.{name}" for name in base.classifier_names) + ("crf",)

    def forward(self, images: Tensor, targets: Tensor | None = None) -> SegmentationOutput:
        """The base's logits refined by the CRF; its auxiliary logits unchanged.

        Shape:
            - images: (B, 3, H, W) RGB in [0, 1]. Output logits: (B, K, H, W).
        """
        raw = self.base(images)
        return SegmentationOutput(logits=self.crf(raw.logits, images), aux_logits=raw.aux_logits)


def with_crf(base: SemanticSegmenter, **crf_options: Any) -> CRFRefined:
    """`base` followed by a `MeanFieldCRF` with the same classes; `crf_options` go to `MeanFieldCRF`."""
    return CRFRefined(base=base, crf=MeanFieldCRF(num_classes=base.num_classes, **crf_options))
