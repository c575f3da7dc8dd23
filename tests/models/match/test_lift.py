"""LIFT's networks: shapes and ranges, the GHH activation against a loop, the Hessian start of DET (blobs
over edges, symmetric under 90-degree turns), DESC's invariance to brightness and contrast, and bad input."""
import itertools

import numpy as np
import pytest
import skimage.data
import torch

from ninshiki.models.match.lift import LIFT, lift, to_gray
from ninshiki.models.match.lift_nets import GHH, DescriptorNet, LiftDetector, OrientationNet, hessian_kernels
from ninshiki.registry import model_info


@pytest.fixture(scope="module")
def model() -> LIFT:
    torch.manual_seed(0)
    return lift().eval()


def test_registered_as_a_match_model() -> None:
    info = model_info("lift")
    assert info.task == "match" and info.test_input == (1, 64, 64) and "LIFT" in info.paper


def test_shapes_and_ranges(model: LIFT) -> None:
    images = torch.rand(2, 1, 64, 80)
    with torch.no_grad():
        scores = model(images)
        assert scores.shape == (2, 1, 64, 80) and torch.equal(scores, model.score_map(images))
        patches = torch.rand(5, 1, 32, 32)
        angles = model.orient(patches)
        descriptors = model.describe(patches)
    assert angles.shape == (5,) and bool(((angles >= 0) & (angles < 360)).all())
    assert descriptors.shape == (5, 128)
    torch.testing.assert_close(descriptors.norm(dim=1), torch.ones(5))
    assert model.model_kwargs() == {"patch_size": 32, "descriptor_dim": 128, "det_kernel": 15, "det_groups": 4,
                                    "det_pieces": 4}


def test_other_patch_sizes_and_descriptor_lengths() -> None:
    small = lift(patch_size=24, descriptor_dim=64).eval()
    with torch.no_grad():
        assert small.describe(torch.rand(3, 1, 24, 24)).shape == (3, 64)
        assert small.orient(torch.rand(3, 1, 24, 24)).shape == (3,)
    large = lift(patch_size=64).eval()
    with torch.no_grad():
        assert large.describe(torch.rand(2, 1, 64, 64)).shape == (2, 128)


def test_rgb_input_is_read_as_luminance() -> None:
    torch.manual_seed(1)
    rgb_model = lift(in_channels=3).eval()
    gray_model = lift().eval()
    gray_model.load_state_dict(rgb_model.state_dict())
    images = torch.rand(1, 3, 40, 40)
    expected = 0.299 * images[:, :1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:]
    torch.testing.assert_close(to_gray(images), expected)
    with torch.no_grad():
        torch.testing.assert_close(rgb_model(images), gray_model(expected))


def test_ghh_is_the_signed_sum_of_group_maxima() -> None:
    x = torch.randn(2, 2 * 3 * 4, 5, 6)                                          # C = 2 outputs, N = 3, M = 4
    out = GHH(groups=3, pieces=4)(x)
    expected = torch.zeros(2, 2, 5, 6)
    for c, n in itertools.product(range(2), range(3)):
        block = x[:, (c * 3 + n) * 4:(c * 3 + n + 1) * 4]                         # (2, M, 5, 6)
        expected[:, c] += (-1) ** n * block.max(dim=1).values
    torch.testing.assert_close(out, expected)


def test_hessian_kernels_differentiate_a_quadratic() -> None:
    # wide enough (+-8 sigma) that truncating the Gaussian does not matter
    gxx, gyy, gxy = (k.double() for k in hessian_kernels(41, 2.5))
    r = torch.arange(41, dtype=torch.float64) - 20
    y, x = r[:, None], r[None, :]
    for kernel, surface, target in ((gxx, x ** 2, 2.0), (gyy, y ** 2, 2.0), (gxy, x * y, 1.0)):
        # correlating with the kernel gives sigma^2 times the surface's second derivative (2, 2 and 1)
        assert abs(float((kernel * surface).sum()) / 2.5 ** 2 - target) < 1e-3 * target
    assert abs(float((gxx * y ** 2).sum())) < 1e-3 and abs(float((gxy * x ** 2).sum())) < 1e-9


def blob_and_edge() -> torch.Tensor:
    """A bright Gaussian blob on the left and a vertical step edge on the right."""
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(128.0), indexing="ij")
    blob = torch.exp(-((x - 32) ** 2 + (y - 32) ** 2) / (2 * 3.0 ** 2))
    edge = (x >= 96).double()
    return (0.2 + 0.5 * blob + 0.5 * edge).float()[None, None]                   # (1, 1, 64, 128)


def test_the_untrained_detector_fires_on_blobs_not_on_edges(model: LIFT) -> None:
    with torch.no_grad():
        scores = model.score_map(blob_and_edge())[0, 0]
    peak = torch.nonzero(scores == scores.max())[0].tolist()
    assert abs(peak[0] - 32) <= 1 and abs(peak[1] - 32) <= 1
    along_edge = scores[16:48, 80:112].max()                                     # away from the image border
    assert scores.max() > 5 * along_edge.clamp_min(1e-6)


def test_the_untrained_detector_commutes_with_quarter_turns(model: LIFT) -> None:
    # the Hessian filters turn into each other; only the 1e-4 symmetry-breaking noise differs
    image = torch.from_numpy(skimage.data.camera()[100:196, 200:328]).float()[None, None] / 255
    with torch.no_grad():
        turned = model.score_map(torch.rot90(image, 1, dims=(2, 3)))
        expected = torch.rot90(model.score_map(image), 1, dims=(2, 3))
    assert (turned - expected).abs().max() < 0.03 * expected.abs().max()


def test_descriptors_ignore_brightness_and_contrast(model: LIFT) -> None:
    patches = torch.rand(4, 1, 32, 32) * 0.5
    with torch.no_grad():
        torch.testing.assert_close(model.describe(1.6 * patches + 0.1), model.describe(patches), atol=1e-5,
                                   rtol=1e-5)
        torch.testing.assert_close(model.orient(1.6 * patches + 0.1), model.orient(patches), atol=1e-3, rtol=1e-4)


def test_networks_are_small_enough_for_a_cpu() -> None:
    count = sum(p.numel() for p in lift().parameters())
    assert 100_000 < count < 500_000, count


@pytest.mark.parametrize("build, message", [
    (lambda: lift(in_channels=2), "in_channels"),
    (lambda: LiftDetector(kernel_size=14), "odd kernel"),
    (lambda: OrientationNet(patch_size=16), "at least 24"),
    (lambda: DescriptorNet(patch_size=12), "at least 16"),
])
def test_bad_options_are_refused(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_patch_shapes_are_refused(model: LIFT) -> None:
    with pytest.raises(ValueError, match=r"grayscale patches of shape \(N, 1, H, W\)"):
        model.describe(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 1 or 3, H, W\)"):
        model.score_map(torch.rand(32, 32))


def test_gradients_reach_every_network(model: LIFT) -> None:
    trained = lift()
    images = torch.rand(1, 1, 40, 40)
    patches = torch.rand(3, 1, 32, 32)
    loss = trained(images).mean() + trained.orientation_vectors(patches).sum() + trained.describe(patches).sum()
    loss.backward()
    for name, parameter in trained.named_parameters():
        assert parameter.grad is not None and np.isfinite(parameter.grad.numpy()).all(), name
