"""medkern.models.ImageGAN: the networks on medkern layers against the same networks on torch layers,
training with every loss and penalty, sampling, checkpoints, resume, and bad input. Tiny and fast."""
import numpy as np
import pytest
import torch

from medkern import losses
from medkern.data import ArrayDataset, synthetic_lesions
from medkern.models import ImageGAN, load, networks
from medkern.models.gan_networks import Discriminator, Generator, upsamplings
from medkern.train.gan_config import LOSSES, GANConfig
from medkern.train.gan_loop import cutout, translate

QUIET = {"progress": False, "log": None}
TINY = {"latent_dim": 8, "width": 4}


@pytest.fixture(scope="module")
def lesions():
    return synthetic_lesions(24, size=16, seed=3)


def _medkern_layers(net):
    return sum(type(m).__module__.startswith("medkern.nn") for m in net.modules())


@pytest.mark.parametrize("h,w,steps", [(28, 28, 2), (64, 64, 4), (16, 24, 2), (10, 10, 1)])
def test_generator_shapes(h, w, steps):
    assert upsamplings(h, w) == steps
    g = Generator(3, (h, w), num_classes=2, latent_dim=8, width=4)
    d = Discriminator(3, (h, w), num_classes=2, width=4)
    x = g(torch.randn(5, 8), torch.tensor([0, 1, 1, 0, 1]))
    assert x.shape == (5, 3, h, w) and x.abs().max() <= 1
    assert d(x, torch.tensor([0, 1, 1, 0, 1])).shape == (5,)


@pytest.mark.parametrize("h,w", [(7, 7), (28, 27), (6, 6)])
def test_odd_or_tiny_sizes_raise(h, w):
    with pytest.raises(ValueError, match="image size"):
        upsamplings(h, w)


@pytest.mark.parametrize("conditioning", ["projection", "acgan", None])
def test_medkern_players_match_torch_including_the_r1_double_backward(conditioning):
    """Same weights, medkern layers vs torch layers: outputs, and the R1 penalty's gradient with respect
    to the discriminator's weights, which runs the double backward of conv and leaky ReLU."""
    torch.manual_seed(0)
    labels = torch.tensor([1, 0, 1])
    nets = {}
    for layers in ("medkern", "torch"):
        torch.manual_seed(0)
        g = networks.build(Generator, layers, 1, (12, 12), num_classes=2, latent_dim=8, width=4).double()
        torch.manual_seed(1)
        d = networks.build(Discriminator, layers, 1, (12, 12), num_classes=2, conditioning=conditioning, width=4).double()
        nets[layers] = (g, d)
    assert _medkern_layers(nets["medkern"][1]) > 0 and _medkern_layers(nets["torch"][1]) == 0
    z = torch.randn(3, 8, dtype=torch.float64)
    real = torch.rand(3, 1, 12, 12, dtype=torch.float64) * 2 - 1
    results = {}
    for layers, (g, d) in nets.items():
        fake = g(z, labels)

        def critic(t):
            out = d(t, labels)
            return out[0] if isinstance(out, tuple) else out
        penalty = losses.r1_penalty(critic, real.clone(), weight=2.0)
        # Biases reach the input gradient only through leaky ReLU's piecewise-constant slope: no gradient.
        grads = torch.autograd.grad(penalty, list(d.parameters()), allow_unused=True, materialize_grads=True)
        results[layers] = (fake, critic(fake), penalty, grads)
    for a, b in zip(results["medkern"][:3], results["torch"][:3]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    for a, b in zip(results["medkern"][3], results["torch"][3]):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("penalty", ["r1", "wgan-gp", None])
def test_every_loss_and_penalty_trains(lesions, loss, penalty):
    gan = ImageGAN(**TINY).fit(lesions, epochs=1, batch_size=8, loss=loss, penalty=penalty, penalty_every=2, **QUIET)
    row = gan.history[0]
    assert {"d_loss", "g_loss", "penalty", "d_real", "d_fake", "seconds"} <= set(row)
    assert all(np.isfinite(v) for v in row.values())
    assert (row["penalty"] > 0) == (penalty is not None)


@pytest.mark.parametrize("arch", [{"conditioning": "acgan"}, {"conditioning": None}, {"spectral_norm": True}])
def test_conditioning_options_and_spectral_norm(lesions, arch):
    gan = ImageGAN(**TINY, **arch).fit(lesions, epochs=1, batch_size=8, d_steps=2, augment=(), flip=False, **QUIET)
    assert gan.num_classes == (0 if arch.get("conditioning", "projection") is None else 2)
    x = gan.sample(5, seed=0)
    assert x.shape == (5, 3, 16, 16) and 0 <= x.min() and x.max() <= 1
    if arch.get("spectral_norm"):
        assert any("parametrizations" in k for k in gan.discriminator.state_dict())


def test_sample_save_load_round_trip(lesions, tmp_path):
    gan = ImageGAN(**TINY).fit(lesions, epochs=2, batch_size=8, out=tmp_path, **QUIET)
    assert gan.num_classes == 2 and _medkern_layers(gan.generator) > 0
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    a = gan.sample(6, label=1, seed=4)
    assert a.shape == (6, 3, 16, 16)
    torch.testing.assert_close(a, gan.sample(6, label=1, seed=4))
    assert not torch.equal(a, gan.sample(6, label=0, seed=4))  # the label conditions the generator
    gan.save(tmp_path / "gan.pt")
    again = load(tmp_path / "gan.pt")
    assert type(again) is ImageGAN and again.history == gan.history and again.shape == gan.shape
    torch.testing.assert_close(again.sample(6, label=1, seed=4), a)
    as_torch = ImageGAN.load(tmp_path / "gan.pt", layers="torch")
    assert _medkern_layers(as_torch.generator) == 0
    torch.testing.assert_close(as_torch.sample(6, label=1, seed=4), a, atol=1e-5, rtol=0)
    assert gan.sample(0).shape == (0, 3, 16, 16)
    # The class proportions of an unlabelled draw follow the training set's.
    assert gan.shape["class_counts"] == torch.bincount(lesions.y).tolist()


def test_resume_reproduces_the_uninterrupted_run(lesions, tmp_path):
    options = {"batch_size": 8, **QUIET}
    whole = ImageGAN(**TINY).fit(lesions, epochs=2, out=tmp_path / "whole", **options)
    ImageGAN(**TINY).fit(lesions, epochs=1, out=tmp_path / "part", **options)
    resumed = ImageGAN(**TINY).fit(lesions, epochs=2, out=tmp_path / "part", resume=True, **options)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in whole.history]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history] == strip
    torch.testing.assert_close(resumed.sample(4, seed=1), whole.sample(4, seed=1))


def test_time_limit_stops_early(lesions):
    gan = ImageGAN(**TINY).fit(lesions, epochs=50, batch_size=8, time_limit=1e-9, **QUIET)
    assert len(gan.history) == 1


def test_bad_input_raises_clear_errors(lesions):
    with pytest.raises(TypeError, match="unknown option"):
        ImageGAN(depth=3)
    with pytest.raises(ValueError, match="conditioning"):
        ImageGAN(conditioning="concat")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ImageGAN(**TINY).fit(ArrayDataset(lesions.x * 2 - 1, lesions.y), epochs=1, **QUIET)
    with pytest.raises(ValueError, match="images"):
        ImageGAN(**TINY).fit(ArrayDataset(torch.rand(8, 1, 16), torch.zeros(8, dtype=torch.int64)), **QUIET)
    with pytest.raises(ValueError, match="loss"):
        GANConfig(loss="bce")
    with pytest.raises(ValueError, match="penalty"):
        GANConfig(penalty="r3")
    with pytest.raises(ValueError, match="augment"):
        GANConfig(augment="color")
    with pytest.raises(ValueError, match="d_steps"):
        GANConfig(d_steps=0)
    with pytest.raises(TypeError, match="unknown training option"):
        ImageGAN(**TINY).fit(lesions, epoch=1, **QUIET)
    with pytest.raises(RuntimeError, match="not trained"):
        ImageGAN().sample(2)
    gan = ImageGAN(**TINY).fit(lesions, epochs=1, batch_size=8, **QUIET)
    with pytest.raises(ValueError, match="label"):
        gan.sample(2, label=2)
    with pytest.raises(ValueError, match="n must"):
        gan.sample(-1)
    unconditional = ImageGAN(**TINY, conditioning=None).fit(lesions, epochs=1, batch_size=8, **QUIET)
    with pytest.raises(ValueError, match="unconditional"):
        unconditional.sample(2, label=0)


def test_translate_and_cutout():
    torch.manual_seed(0)
    x = torch.rand(64, 2, 9, 11, requires_grad=True)
    y = translate(x, ratio=0.25)
    # Each image is its own shift: the kept pixels are a block of the original, the rest zero.
    for i in range(8):
        found = False
        for dy in range(-2, 3):
            for dx in range(-3, 4):
                shifted = torch.zeros(2, 9, 11)
                src = x[i].detach()
                shifted[:, max(0, -dy):9 - max(0, dy), max(0, -dx):11 - max(0, dx)] = \
                    src[:, max(0, dy):9 + min(0, dy), max(0, dx):11 + min(0, dx)]
                found |= torch.equal(y[i].detach(), shifted)
        assert found
    y.sum().backward()
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0} and x.grad.sum() > 0
    z = cutout(torch.ones(32, 1, 8, 8), ratio=0.5)
    zeros = (z == 0).sum(dim=(1, 2, 3))
    assert (zeros <= 16).all() and (zeros >= 4).all() and (zeros == 16).any()
