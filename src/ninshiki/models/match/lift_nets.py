"""The three networks of LIFT: Yi, Trulls, Lepetit and Fua, "LIFT: Learned Invariant Feature Transform"
(ECCV 2016, arXiv:1603.09114), sized for 32-pixel patches and CPU training.

- DET: one convolution followed by a generalised-hinging-hyperplanes (GHH) activation,
  S = sum_n delta_n max_m (W_nm * I + b_nm), delta_n = +1 for even n and -1 for odd n, as in the paper
  (after TILDE, Verdie et al., CVPR 2015), with N = M = 4. The paper's kernel is 25 pixels for 128-pixel
  patches; ours is 15 by default for 32-pixel descriptor patches. Deviation: the kernel starts as a blob
  detector instead of noise, so that an untrained DET already fires where SIFT's difference of Gaussians
  does and training refines it: with the Gaussian second derivatives Dxx, Dyy, Dxy (sigma = kernel / 6),
  the first (+) group holds +-(Dxx + Dyy) and the second (-) group +-(Dxx - Dyy) and +-2 Dxy, the others
  near zero, so S starts as |l1 + l2| - max(|Dxx - Dyy|, |2 Dxy|) ~ 2 min(|l1|, |l2|) for Hessian
  eigenvalues l1, l2 of one sign: strong on blobs, near zero on edges (SIFT's edge test, in one layer).
- ORI: Yi et al., "Learning to Assign Orientations to Feature Points" (CVPR 2016): convolutions, pooling and
  fully connected layers regressing a 2-vector read as (cos, sin) of the orientation. Deviation: ReLU instead
  of the paper's GHH activations in the fully connected layers.
- DESC: Simo-Serra et al., "Discriminative Learning of Deep Convolutional Feature Point Descriptors"
  (ICCV 2015), which LIFT uses: three convolutions, the first two followed by tanh and L2 pooling, giving a
  128-D vector; the patch is first standardised (zero mean, unit variance, the paper's subtractive and
  divisive normalisation) and the output is L2-normalised (LIFT compares descriptors by Euclidean distance).
  For 32-pixel patches the kernels are 5 and 5 and the third convolution spans what is left of the patch
  (a fully connected layer), where the paper's are 7, 6 and 5 with tanh and L2 pooling after the third too.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def standardise(x: Tensor, eps: float = 1e-2) -> Tensor:
    """Each image or patch to zero mean and unit variance over its pixels (std floored at `eps`).

    Shape:
        - x: (B, C, H, W). Output: the same.
    """
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = x.std(dim=(-2, -1), keepdim=True, unbiased=False)
    return (x - mean) / std.clamp_min(eps)


class GHH(nn.Module):
    """Generalised hinging hyperplanes over channel groups: out = sum_n delta_n max_m x[n * M + m].

    Args:
        groups: N, the number of max-groups (delta alternates +1, -1, ... starting with +1).
        pieces: M, the linear pieces in each group.

    Shape:
        - Input: (B, C * N * M, H, W). Output: (B, C, H, W).
    """

    def __init__(self, *, groups: int, pieces: int) -> None:
        super().__init__()
        self.groups, self.pieces = groups, pieces
        self.register_buffer("delta", torch.tensor([(-1.0) ** n for n in range(groups)]), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        grouped = x.view(b, c // (self.groups * self.pieces), self.groups, self.pieces, h, w)
        maxima = grouped.amax(dim=3)                                              # (B, C, N, H, W)
        return (maxima * self.delta.view(1, 1, -1, 1, 1)).sum(dim=2)


def hessian_kernels(size: int, sigma: float) -> tuple[Tensor, Tensor, Tensor]:
    """Scale-normalised second derivatives of a Gaussian, sigma^2 (G_xx, G_yy, G_xy), each of zero sum.

    Shape:
        - Output: three (size, size) float32 kernels, x along columns, y along rows.
    """
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = r[:, None], r[None, :]
    gauss = torch.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2)) / (2 * math.pi * sigma ** 2)   # (size, size)
    kernels = ((x ** 2 / sigma ** 2 - 1) * gauss, (y ** 2 / sigma ** 2 - 1) * gauss, x * y / sigma ** 2 * gauss)
    return tuple((k - k.mean()).float() for k in kernels)  # type: ignore[return-value]


class LiftDetector(nn.Module):
    """DET: a score map from a standardised grayscale image (one convolution and a GHH activation).

    Args:
        kernel_size: odd convolution size (reflection padding keeps the map the input's size).
        groups, pieces: the GHH's N and M.

    Shape:
        - Input: (B, 1, H, W) standardised. Output: (B, 1, H, W) scores (larger is a better keypoint).
    """

    def __init__(self, *, kernel_size: int = 15, groups: int = 4, pieces: int = 4) -> None:
        super().__init__()
        if kernel_size % 2 != 1 or groups < 1 or pieces < 2:
            raise ValueError(f"DET needs an odd kernel, groups >= 1 and pieces >= 2; got {kernel_size}, "
                             f"{groups}, {pieces}")
        self.kernel_size = kernel_size
        self.conv = nn.Conv2d(1, groups * pieces, kernel_size, padding=kernel_size // 2, padding_mode="reflect")
        self.ghh = GHH(groups=groups, pieces=pieces)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The Hessian blob detector described in the module docstring, plus small noise (needs N >= 2, M >= 4;
        with fewer, the start is |LoG| alone or noise)."""
        nn.init.normal_(self.conv.weight, std=1e-4)
        nn.init.zeros_(self.conv.bias)
        pieces, groups = self.ghh.pieces, self.ghh.groups
        gxx, gyy, gxy = hessian_kernels(self.kernel_size, self.kernel_size / 6)
        weight = self.conv.weight.view(groups, pieces, self.kernel_size, self.kernel_size)
        trace = (gxx + gyy, -(gxx + gyy))                                        # max of +-: |trace|
        anisotropy = (gxx - gyy, gyy - gxx, 2 * gxy, -2 * gxy)                   # max of these: ~|l1 - l2|
        for i in range(pieces):
            weight[0, i] += trace[i % 2]
        if groups >= 2 and pieces >= 4:
            for i in range(pieces):
                weight[1, i] += anisotropy[i % 4]

    def forward(self, x: Tensor) -> Tensor:
        return self.ghh(self.conv(x))


class OrientationNet(nn.Module):
    """ORI: the orientation of a patch sampled without rotation, as an angle in degrees.

    Shape:
        - Input: (N, 1, P, P), P >= 24. Output: (N, 2) unit vectors (cos, sin).
    """

    def __init__(self, *, patch_size: int = 32) -> None:
        super().__init__()
        side = ((patch_size - 4) // 2 - 4) // 2 - 2
        if side < 1:
            raise ValueError(f"ORI needs patches of at least 24 pixels, got {patch_size}")
        self.features = nn.Sequential(
            nn.Conv2d(1, 10, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(10, 20, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 3), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(50 * side * side, 100), nn.ReLU(inplace=True),
                                  nn.Linear(100, 2))

    def forward(self, patches: Tensor) -> Tensor:
        vector = self.head(self.features(standardise(patches)))                  # (N, 2)
        return F.normalize(vector, dim=1, eps=1e-6)


class L2Pool(nn.Module):
    """sqrt(mean of squares) over k x k windows with stride k (DeepDesc's L2 pooling)."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: Tensor) -> Tensor:
        return (F.avg_pool2d(x * x, self.kernel_size) + 1e-8).sqrt()


class DescriptorNet(nn.Module):
    """DESC: an L2-normalised descriptor of a standardised, oriented patch.

    Shape:
        - Input: (N, 1, P, P), P >= 24. Output: (N, descriptor_dim) unit vectors.
    """

    def __init__(self, *, patch_size: int = 32, descriptor_dim: int = 128) -> None:
        super().__init__()
        side = ((patch_size - 4) // 2 - 4) // 2
        if side < 1 or descriptor_dim < 1:
            raise ValueError(f"DESC needs patches of at least 16 pixels and descriptor_dim >= 1, got "
                             f"{patch_size} and {descriptor_dim}")
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5), nn.Tanh(), L2Pool(2),
            nn.Conv2d(32, 64, 5), nn.Tanh(), L2Pool(2),
            nn.Conv2d(64, descriptor_dim, side))                                  # the rest of the patch: (N, D, 1, 1)

    def forward(self, patches: Tensor) -> Tensor:
        out = self.features(standardise(patches)).flatten(1)                      # (N, D)
        return F.normalize(out, dim=1, eps=1e-6)
