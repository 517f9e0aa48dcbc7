"""Print what each kernel classifier reads on kernels whose answer is known, per kernel size.

    .venv/bin/python scripts/classifier_calibration.py [--kernels 4000] [--sizes 3 5 7 9 11]

For every classifier (default settings: ``threshold="auto"``, alpha 0.05) and kernel size:

- the threshold ``auto`` picks (calibrated on i.i.d. Gaussian kernels);
- on+off share of a fresh draw of i.i.d. Gaussian kernels, and their chance share;
- on+off of DoGs (gamma ~ U(0, 1), on/off at random), and of the same DoGs with their pixels
  permuted (should equal the chance share);
- on+off of DoGs plus noise of equal energy, and of half that energy;
- on+off of Gaussian blobs (sigma 0.3-3 px, scaled with the size), which must be 0;
- on+off of oriented bars: second derivatives of a Gaussian at a random angle, sign and sigma
  (0.8-1.8 px, scaled with the size), drawn off the template bank's grid. They are not
  center-surround, yet correlate up to 0.83 with a DoG: a classifier without bar templates (the
  paper's k-means, before its per-kernel gate was the taxonomy) calls them all on/off; both
  classifiers now call none, and pay for it with fewer noisy DoGs found at small sizes.

The numbers in docs/classification.md come from this script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a file, the script's folder is on the path, not the repository
    sys.path.insert(0, str(REPO))

from neural_echos.classifiers import CLASSIFIERS, get_classifier
from neural_echos.dog import dog_kernels


def unit(kernels: torch.Tensor) -> torch.Tensor:
    return kernels / kernels.flatten(1).norm(dim=1)[:, None, None]


def bars(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    """Oriented second derivatives of a Gaussian, d^2G/du^2 with u = x cos(theta) + y sin(theta)."""
    theta = torch.rand(n, generator=g)[:, None, None] * torch.pi
    sigma = ((0.8 + 1.0 * torch.rand(n, generator=g)) * k / 7).clamp(min=0.8)[:, None, None]
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)[:, None, None]
    ys = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
    y, x = ys[:, None], ys[None, :]
    u = x * theta.cos() + y * theta.sin()
    bar = (u**2 / sigma**4 - 1 / sigma**2) * torch.exp(-(x**2 + y**2) / (2 * sigma**2))  # G_uu
    return unit(sign * bar)


def on_off(shares: dict[str, float]) -> float:
    return shares["on_center"] + shares["off_center"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", type=int, default=4000, help="kernels per case (default 4000)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 5, 7, 9, 11])
    args = parser.parse_args()
    n = args.kernels
    print(
        "| classifier | size | auto threshold | Gaussian on+off (chance) | DoG | permuted DoG (chance) "
        "| DoG + noise, equal energy | half energy | blobs | bars |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in sorted(CLASSIFIERS):
        classifier = get_classifier(name)
        for k in args.sizes:
            g = torch.Generator().manual_seed(k)
            gaussian = classifier.classify_kernels(torch.randn(n, k, k, generator=g))
            gamma = 0.01 + 0.98 * torch.rand(n, generator=g)
            dogs = unit(dog_kernels(gamma, k, on_center=torch.rand(n, generator=g) < 0.5))
            permuted = (
                dogs.flatten(1).gather(1, torch.rand(n, k * k, generator=g).argsort(1)).reshape(n, k, k)
            )
            dog_report = classifier.classify_kernels(dogs)
            permuted_report = classifier.classify_kernels(permuted)
            noisy = {
                e: on_off(
                    classifier.classify_kernels(
                        dogs + unit(torch.randn(n, k, k, generator=g)) * e**0.5
                    ).proportions()
                )
                for e in (1.0, 0.5)
            }
            ys = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
            d2 = ys[:, None] ** 2 + ys[None, :] ** 2
            sigma = (0.3 + 2.7 * torch.rand(n, generator=g)) * k / 7
            blobs = torch.exp(-d2[None] / (2 * sigma[:, None, None] ** 2))
            blob_share = on_off(classifier.classify_kernels(blobs).proportions())
            bar_share = on_off(classifier.classify_kernels(bars(n, k, g)).proportions())
            print(
                f"| {name} | {k}x{k} | {classifier.threshold_for((k, k)):.3f} "
                f"| {on_off(gaussian.proportions()):.1%} ({on_off(gaussian.chance()):.1%}) "
                f"| {on_off(dog_report.proportions()):.1%} "
                f"| {on_off(permuted_report.proportions()):.1%} ({on_off(permuted_report.chance()):.1%}) "
                f"| {noisy[1.0]:.1%} | {noisy[0.5]:.1%} | {blob_share:.1%} | {bar_share:.1%} |"
            )


if __name__ == "__main__":
    main()
