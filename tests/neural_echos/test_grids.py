"""Kernel pictures that explain themselves: title, legend strip, sampling, scaling, captions."""

import numpy as np
import pytest
import torch

from neural_echos.classifiers import CLASSES, get_classifier
from neural_echos.collect import LayerKernels
from neural_echos.dog import dog_kernels
from neural_echos.grids import (
    CLASS_COLOURS,
    FONT_SIZE,
    WIDTH,
    Block,
    centroid_image,
    grouped_grid_images,
    kernel_grid,
    layer_shares_image,
    legend_strip,
    select_kernels,
)


def has_colour(image, rgb, at_least=10):
    return int((image.reshape(-1, 3) == np.array(rgb, np.uint8)).all(axis=1).sum()) >= at_least


@pytest.fixture(scope="module")
def report_and_layers():
    g = torch.Generator().manual_seed(0)
    dogs = dog_kernels(
        0.1 + 0.8 * torch.rand(200, generator=g), 7, on_center=torch.rand(200, generator=g) < 0.5
    )
    layers = [
        LayerKernels("stages.0.dw", "k", torch.cat([dogs, torch.randn(120, 7, 7, generator=g)])),
        LayerKernels("stages.1.dw", "k", torch.randn(40, 5, 5, generator=g)),
    ]
    return get_classifier("kmeans").classify(layers), layers


def test_select_kernels_spread_and_per_class():
    classes = np.array([0] * 90 + [1] * 10)
    spread = select_kernels(classes, 10, "spread")
    assert len(spread) == 10 and spread[0] == 0 and spread[-1] == 99  # across the whole layer
    per_class = select_kernels(classes, 10, "per_class")
    assert (classes[per_class] == 1).sum() == 5  # the rare class gets its share
    assert list(select_kernels(classes[:5], 10)) == [0, 1, 2, 3, 4]
    few = select_kernels(np.array([0] * 50 + [1] * 2), 10, "per_class")
    assert len(few) == 10 and (np.diff(few) > 0).all()


def test_grid_has_title_legend_and_documented_width(report_and_layers):
    report, layers = report_and_layers
    pictures = grouped_grid_images(layers, report, max_kernels=64)
    assert [group for group, _, _ in pictures] == ["stages.0.dw", "stages.1.dw"]
    image = pictures[0][2]
    assert image.dtype == np.uint8 and image.shape[2] == 3 and image.shape[1] == WIDTH  # TensorBoard's card
    legend = legend_strip(report.detailed_classes, image.shape[1])  # frames: each kernel's taxonomy
    assert np.array_equal(image[-legend.shape[0] :], legend)  # the legend strip closes the picture
    for name in ("on_center", "off_center"):  # frames in the grid
        assert has_colour(image[: -legend.shape[0]], CLASS_COLOURS[name])
    for name in report.detailed_classes:  # and a swatch of every class in the legend
        assert has_colour(legend, CLASS_COLOURS[name], at_least=5)


def test_scaling_and_transfer_change_the_colours():
    small = dog_kernels(torch.tensor([0.3]), 7) * 0.01
    big = dog_kernels(torch.tensor([0.3]), 7)
    block = [Block(torch.cat([small, big]).numpy(), np.zeros(2, np.int64))]
    per_kernel = kernel_grid(block, CLASSES, "t", scaling="kernel")
    shared = kernel_grid(block, CLASSES, "t", scaling="layer")
    lifted = kernel_grid(block, CLASSES, "t", scaling="kernel", transfer="signed_sqrt")
    assert not np.array_equal(per_kernel, shared) and not np.array_equal(per_kernel, lifted)
    body = slice(30, 80)  # the kernels, below the title
    white = np.array([255, 255, 255])
    # shared scale: the 100x smaller kernel is almost white; the signed sqrt shows more surround
    assert np.abs(shared[body].astype(int) - white).sum() < np.abs(per_kernel[body].astype(int) - white).sum()
    assert np.abs(lifted[body].astype(int) - white).sum() > np.abs(per_kernel[body].astype(int) - white).sum()
    with pytest.raises(ValueError, match="scaling"):
        kernel_grid(block, CLASSES, scaling="global")


def test_centroids_are_captioned_and_layers_image_has_a_row_per_layer(report_and_layers):
    report, _ = report_and_layers
    centroids = centroid_image(report)
    assert centroids.shape[1] >= WIDTH
    layers = layer_shares_image(report).astype(int)
    row = FONT_SIZE + 6
    assert layers.shape == (
        3 * row + len(report.layers) * row + 6,
        WIDTH,
        3,
    )  # title, key, header, a row each
    assert report.proportions([report.layers[0]])["on_center"] > 0.2
    assert report.proportions([report.layers[1]])["on_center"] == 0

    def greenish(band):  # a tint between white and the on-center green
        r, g, b = band[..., 0], band[..., 1], band[..., 2]
        return int(((g > r + 20) & (g > b + 20)).sum())

    first, second = layers[3 * row : 4 * row], layers[4 * row : 5 * row]
    assert greenish(first) > 100 and greenish(second) == 0
