"""LIFT: Yi, Trulls, Lepetit and Fua, "LIFT: Learned Invariant Feature Transform" (ECCV 2016,
arXiv:1603.09114).

Three small CNNs in a row, each a learned replacement for one stage of SIFT: DET scores every pixel of an
image (keypoints are the local maxima over positions and scales), ORI assigns each keypoint an orientation
from its patch, and DESC describes the patch re-sampled at that orientation. Patches are cut by spatial
transformers (`lift_patches`), so the whole chain is differentiable and trains end to end from pairs of
views with known correspondences, one stage at a time as in the paper: DESC, then ORI, then DET
(`lift_train`). `LiftExtractor` (`lift_extractor`) runs it on whole images behind the same interface as SIFT.
The networks and where they deviate from the paper are described in `lift_nets`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ninshiki.models.match.lift_nets import DescriptorNet, LiftDetector, OrientationNet, standardise
from ninshiki.registry import register

_PAPER = "Yi, Trulls, Lepetit and Fua, LIFT: Learned Invariant Feature Transform, ECCV 2016"


class LIFT(nn.Module):
    """DET, ORI and DESC on grayscale images in [0, 1].

    Args:
        in_channels: channels of the images `score_map` takes: 1, or 3 (converted to luminance first). Patches
            are always grayscale.
        patch_size: P, the side of ORI's and DESC's patches in samples; a keypoint found at pyramid scale s
            covers P / s image pixels.
        descriptor_dim: D.
        det_kernel: DET's convolution size (odd).
        det_groups, det_pieces: the GHH activation's N and M (4 and 4 in the paper).

    Shape:
        - Input of `forward` / `score_map`: (B, in_channels, H, W) float in [0, 1]. Output: (B, 1, H, W) scores.
    """

    def __init__(self, *, in_channels: int = 1, patch_size: int = 32, descriptor_dim: int = 128, det_kernel: int = 15,
                 det_groups: int = 4, det_pieces: int = 4) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"lift takes gray (in_channels=1) or RGB (3) images, got in_channels={in_channels}")
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.descriptor_dim = descriptor_dim
        self.detector = LiftDetector(kernel_size=det_kernel, groups=det_groups, pieces=det_pieces)
        self.orientation = OrientationNet(patch_size=patch_size)
        self.descriptor = DescriptorNet(patch_size=patch_size, descriptor_dim=descriptor_dim)
        self.first_conv = "detector.conv"
        self.classifier_names: tuple[str, ...] = ()

    def forward(self, images: Tensor) -> Tensor:
        return self.score_map(images)

    def score_map(self, images: Tensor) -> Tensor:
        """DET's keypoint scores at every pixel; each image is standardised first (brightness and contrast).

        Shape:
            - images: (B, 1 or 3, H, W) in [0, 1]. Output: (B, 1, H, W).
        """
        return self.detector(standardise(to_gray(images)))

    def orientation_vectors(self, patches: Tensor) -> Tensor:
        """ORI's (cos, sin) of each patch's orientation; differentiable (the training losses use it).

        Shape:
            - patches: (N, 1, P, P) sampled at angle 0. Output: (N, 2) unit vectors.
        """
        _check_gray(patches, "patches")
        return self.orientation(patches)

    def orient(self, patches: Tensor) -> Tensor:
        """ORI's orientation of each patch, in degrees in [0, 360), in the convention of
        `ninshiki.match.features` (re-sampling the patch at this angle gives the canonical patch).

        Shape:
            - patches: (N, 1, P, P) sampled at angle 0. Output: (N,).
        """
        vectors = self.orientation_vectors(patches)                               # (N, 2)
        return torch.rad2deg(torch.atan2(vectors[:, 1], vectors[:, 0])) % 360.0

    def describe(self, patches: Tensor) -> Tensor:
        """DESC's descriptor of each oriented patch.

        Shape:
            - patches: (N, 1, P, P). Output: (N, D) unit vectors.
        """
        _check_gray(patches, "patches")
        return self.descriptor(patches)

    def model_kwargs(self) -> dict[str, int]:
        """The factory keywords besides `in_channels` that rebuild this architecture (saved with the weights)."""
        return {"patch_size": self.patch_size, "descriptor_dim": self.descriptor_dim,
                "det_kernel": self.detector.kernel_size, "det_groups": self.detector.ghh.groups,
                "det_pieces": self.detector.ghh.pieces}


def _check_gray(x: Tensor, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"LIFT takes grayscale {name} of shape (N, 1, H, W), got {tuple(x.shape)}")


def to_gray(images: Tensor) -> Tensor:
    """RGB to luminance with ITU-R 601-2 weights (as `read_image(channels=1)`); gray passes unchanged.

    Shape:
        - images: (B, 1 or 3, H, W). Output: (B, 1, H, W).
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"LIFT takes images of shape (B, 1 or 3, H, W), got {tuple(images.shape)}")
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


@register(task="match", test_input=(1, 64, 64), paper=_PAPER)
def lift(*, num_classes: int = 0, in_channels: int = 1, patch_size: int = 32, descriptor_dim: int = 128,
         det_kernel: int = 15, det_groups: int = 4, det_pieces: int = 4) -> LIFT:
    """LIFT's DET, ORI and DESC for 32-pixel patches and 128-D descriptors (see `LIFT`). `num_classes` is
    accepted for the common factory signature and ignored (local features have no classes); LIFT works on
    grayscale, as SIFT does, and `in_channels=3` only makes `score_map` convert RGB to luminance."""
    del num_classes
    return LIFT(in_channels=in_channels, patch_size=patch_size, descriptor_dim=descriptor_dim, det_kernel=det_kernel,
                det_groups=det_groups, det_pieces=det_pieces)
