import torch
import torchvision.transforms as T
from hypothesis import given, settings
from hypothesis import strategies as st

from datamodules.batch_transforms import normalize, random_crop_flip


def _is_crop_of(out, image, padding):
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    h, w = image.shape[-2:]
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            window = padded[:, top : top + h, left : left + w]
            if torch.equal(out, window) or torch.equal(out, window.flip(-1)):
                return True
    return False


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 4), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_every_output_is_a_padded_crop_or_its_mirror(padding, n, seed):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    out = random_crop_flip(images, padding, generator=torch.Generator().manual_seed(seed))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert all(_is_crop_of(out[i], images[i], padding) for i in range(n))


def test_no_padding_no_flip_is_identity():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(random_crop_flip(images, 0, flip=False), images)


def test_offsets_and_flips_cover_their_range():
    # every pixel holds its source column + 1, so the middle columns reveal offset and flip
    images = (torch.arange(32, dtype=torch.uint8) + 1).repeat(3, 32, 1).unsqueeze(0).repeat(2000, 1, 1, 1)
    out = random_crop_flip(images, 4, generator=torch.Generator().manual_seed(0))
    middle, right = out[:, 0, 16, 16].int(), out[:, 0, 16, 17].int()
    mirrored = right < middle
    assert 0.45 < mirrored.float().mean() < 0.55
    assert set(middle[~mirrored].tolist()) == set(range(13, 22))  # 9 horizontal offsets


def test_same_generator_same_result():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    a = random_crop_flip(images, 4, generator=torch.Generator().manual_seed(1))
    b = random_crop_flip(images, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_normalize_matches_torchvision():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    expected = torch.stack([T.Normalize(mean, std)(img.float() / 255) for img in images])
    torch.testing.assert_close(normalize(images, mean, std), expected, atol=1e-5, rtol=1e-5)
