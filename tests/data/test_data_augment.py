"""Image and signal augmentation."""
import pytest
import torch

import torch.nn.functional as F

from medkern.data import ImageAugment, SignalAugment
from medkern.data.augment import affine_grid, rotation


@pytest.fixture
def image():
    return torch.rand(3, 16, 12, generator=torch.Generator().manual_seed(0))


def test_image_shape_range_and_seed(image):
    aug = ImageAugment(seed=5)
    out = aug(image)
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(ImageAugment(seed=5)(image), out)
    assert not torch.equal(ImageAugment(seed=6)(image), out)


def test_image_identity_and_flip_only(image):
    assert torch.equal(ImageAugment(flip=False, rotate_deg=0, shift=0, intensity=0)(image), image)
    aug = ImageAugment(rotate_deg=0, shift=0, intensity=0, seed=0)
    outs = [aug(image) for _ in range(20)]
    assert all(torch.equal(o, image) or torch.equal(o, image.flip(-1)) for o in outs)
    assert any(torch.equal(o, image) for o in outs) and any(torch.equal(o, image.flip(-1)) for o in outs)


def test_image_geometry_keeps_a_constant_image_and_moves_content(image):
    const = torch.full((1, 10, 10), 0.3)
    torch.testing.assert_close(ImageAugment(flip=False, intensity=0, seed=1)(const), const)
    dot = torch.zeros(1, 21, 21)
    dot[0, 10, 10] = 1.0
    moved = [ImageAugment(flip=False, rotate_deg=0, intensity=0, shift=0.2, seed=s)(dot) for s in range(5)]
    centres = [(o[0] == o[0].max()).nonzero()[0].tolist() for o in moved]
    assert all(max(abs(r - 10), abs(c - 10)) <= 5 for r, c in centres)  # within 0.2 * 21 + rounding
    assert len({tuple(c) for c in centres}) > 1


@pytest.mark.parametrize("angles, shift, shape", [
    ([0.3], [0.1, -0.25], (5, 7)),
    ([0.3], [0.1, -0.25], (16, 16)),
    ([0.2, -0.1, 0.4], [0.1, -0.25, 0.05], (5, 6, 7)),
], ids=["2d-odd", "2d-square", "3d"])
def test_affine_grid_matches_torch(angles, shift, shape):
    matrix = rotation(angles)
    theta = torch.tensor([[*row, t] for row, t in zip(matrix, shift)])[None]
    want = F.affine_grid(theta, [1, 1, *shape], align_corners=False)
    torch.testing.assert_close(affine_grid(matrix, shift, shape), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("angles", [[0.7], [0.2, -0.5, 1.1]], ids=["2d", "3d"])
def test_rotation_is_orthonormal(angles):
    r = torch.tensor(rotation(angles), dtype=torch.float64)
    torch.testing.assert_close(r @ r.T, torch.eye(len(r), dtype=torch.float64))
    assert torch.linalg.det(r).item() == pytest.approx(1.0)


def test_image_intensity_jitter_bounded(image):
    out = ImageAugment(flip=False, rotate_deg=0, shift=0, intensity=0.1, seed=2)(image * 0.5 + 0.25)
    assert (out - (image * 0.5 + 0.25)).abs().max() < 0.1 * 0.5 + 0.1 + 1e-6


def test_signal_scale_shift_noise():
    x = torch.sin(torch.linspace(0, 12, 200))[None].repeat(2, 1) + torch.tensor([[2.0], [-3.0]])
    scaled = SignalAugment(noise=0, shift=0, scale=0.2, seed=0)(x)
    ratio = scaled / x
    assert 0.8 <= ratio[0, 5].item() <= 1.2 and torch.allclose(ratio, ratio[0, 5].expand_as(ratio), atol=1e-4)
    shifted = SignalAugment(noise=0, scale=0, shift=0.1, seed=3)(x)
    k = next(k for k in range(-20, 21) if torch.equal(shifted, _shift(x, k)))
    assert k != 0
    noisy = SignalAugment(noise=0.1, scale=0, shift=0, seed=4)(x)
    rel = (noisy - x).std(dim=1) / x.std(dim=1)  # relative to each channel's own spread
    assert torch.allclose(rel, torch.full((2,), 0.1), atol=0.02)
    assert torch.equal(SignalAugment(seed=9)(x), SignalAugment(seed=9)(x))


def _shift(x, k):
    if k >= 0:
        return torch.cat([x[:, :1].expand(-1, k), x[:, :x.shape[1] - k]], dim=1)
    return torch.cat([x[:, -k:], x[:, -1:].expand(-1, -k)], dim=1)


@pytest.mark.parametrize("call, exc", [
    (lambda: ImageAugment(rotate_deg=-1), ValueError),
    (lambda: SignalAugment(noise=-0.1), ValueError),
    (lambda: ImageAugment()(torch.zeros(4, 4)), ValueError),
    (lambda: SignalAugment()(torch.zeros(4)), ValueError),
])
def test_bad_arguments(call, exc):
    with pytest.raises(exc):
        call()


def test_augments_pickle_for_spawned_workers(image):
    import pickle

    aug = ImageAugment(seed=11)
    copy = pickle.loads(pickle.dumps(aug))  # DataLoader workers started by spawn receive pickled transforms
    assert torch.equal(copy(image), aug(image))
    sig = SignalAugment(seed=1)
    assert torch.equal(pickle.loads(pickle.dumps(sig))(image[0]), sig(image[0]))
