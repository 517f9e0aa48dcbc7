"""Template banks (DoG, derivatives of Gaussians, differences, blobs, deltas) and the synthetic test kernels."""

import numpy as np
import pytest
import torch

from neural_echos.dog import effective_radius
from neural_echos.templates import FAMILIES, ZERO_MEAN_FAMILIES, template_bank
from tests.neural_echos.synthetic import SYNTHETIC_KINDS, synthetic_kernels


@pytest.mark.parametrize("size", [3, 5, 7, 9, (3, 5), (1, 3)])
def test_differences_are_zero_mean_blobs_and_deltas_one_signed_all_unit_norm(size):
    bank = template_bank(size)
    kh, kw = (size, size) if isinstance(size, int) else size
    assert bank.templates.shape == (len(bank), kh * kw)
    assert bank.centre.shape == bank.templates.shape
    zero_mean = torch.isin(bank.family, torch.tensor([FAMILIES.index(f) for f in ZERO_MEAN_FAMILIES]))
    assert torch.allclose(bank.templates[zero_mean].sum(dim=1), torch.zeros(int(zero_mean.sum())), atol=1e-5)
    assert (bank.templates[~zero_mean] >= 0).all() and (bank.templates[~zero_mean].sum(dim=1) > 0).all()
    assert torch.allclose(bank.templates.norm(dim=1), torch.ones(len(bank)), atol=1e-5)
    assert len(bank.names) == len(bank) == len(bank.family)
    has_centre = kh % 2 == 1 and kw % 2 == 1  # the identity kernel needs a centre pixel
    expected = {FAMILIES.index(f) for f in FAMILIES if f != "delta" or has_centre}
    assert set(bank.family.tolist()) == expected - ({0} if min(kh, kw) == 1 and max(kh, kw) < 3 else set())


def test_bank_is_cached_and_families_can_be_chosen():
    assert template_bank(7) is template_bank((7, 7))
    dog = template_bank(7, ("dog",))
    assert (dog.family == 0).all() and len(dog) == int((template_bank(7).family == 0).sum())
    assert all(name.startswith("dog(") for name in dog.names)


@pytest.mark.parametrize("size", [3, 4, 7])
def test_dog_centres_carry_the_positive_sum(size):
    """A DoG's centre entries (d < r) sum to +1 and its surround to -1 (before normalising), so the
    centre mask splits each on-center template into a positive centre and a negative surround."""
    bank = template_bank(size)
    dog = bank.family == 0
    assert bank.centre[~dog].sum() == 0
    centre = bank.centre[dog]
    assert ((centre == 1).sum(1) >= 1).all() and ((centre == 0).sum(1) >= 1).all()
    templates = bank.templates[dog]
    assert torch.allclose((templates * centre).sum(1), -(templates * (1 - centre)).sum(1), atol=1e-5)
    assert ((templates * centre).sum(1) > 0).all()
    radius = effective_radius(torch.tensor([10.0]), size)  # beyond the window: pulled inside
    assert float(radius) < (size - 1) / 2 * 2**0.5


@pytest.mark.parametrize("size", [3, 5, 7, 11])
def test_families_stay_apart(size):
    """Even DoGs are orthogonal to odd (Gaussian) edges; bars match DoGs at most ~0.83
    (G_uu . LoG = 4/sqrt(24)). The discrete differences at half-pixel offsets are not odd about
    the centre, so they are left out here."""
    bank = template_bank(size)
    corr = (bank.templates @ bank.templates.T).abs()
    gaussian_edge = torch.from_numpy(np.char.startswith(bank.names.astype(str), "d1("))
    dog, first, second = bank.family == 0, gaussian_edge, bank.family == 2
    assert corr[dog][:, first].max() < 1e-5
    assert corr[second][:, first].max() < 1e-5
    assert corr[dog][:, second].max() < 0.85


def test_dog_templates_are_on_center():
    images = template_bank(7, ("dog",)).templates.reshape(-1, 7, 7)
    assert (images[:, 3, 3] > 0).all()  # positive centre
    assert (images[:, 0, 0] < images[:, 3, 3]).all()


def test_tiny_grids():
    assert len(template_bank(2, ("dog",))) == 0  # every pixel at the same distance: no DoG
    assert len(template_bank(2)) > 0  # derivatives still fit
    with pytest.raises(ValueError, match="subset"):
        template_bank(7, ("dog", "gabor"))
    with pytest.raises(ValueError, match="too small"):
        template_bank(1)


def test_synthetic_kernels_are_deterministic_and_leave_global_rng_alone():
    counts = {kind: 5 for kind in SYNTHETIC_KINDS}
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    a, kinds_a = synthetic_kernels(counts, size=5, seed=3)
    b, kinds_b = synthetic_kernels(counts, size=5, seed=3)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    assert torch.equal(a, b) and kinds_a == kinds_b
    assert a.shape == (25, 5, 5) and a.dtype == torch.float32
    assert sorted(kinds_a) == sorted(k for k in SYNTHETIC_KINDS for _ in range(5))
    with pytest.raises(ValueError, match="unknown kinds"):
        synthetic_kernels({"gabor": 3})


def test_noiseless_synthetic_kernels_match_their_family():
    counts = {"on_center": 20, "first_derivative": 20, "second_derivative": 20}
    kernels, kinds = synthetic_kernels(counts, noise=0)
    bank = template_bank(7)
    unit = kernels.flatten(1) / kernels.flatten(1).norm(dim=1, keepdim=True)
    best = (unit @ bank.templates.T).abs().max(dim=1)
    assert best.values.min() > 0.9
    families = [FAMILIES[f] for f in bank.family[best.indices].tolist()]
    expected = {"on_center": "dog", "first_derivative": "first_derivative"}
    expected["second_derivative"] = "second_derivative"
    assert families == [expected[kind] for kind in kinds]
