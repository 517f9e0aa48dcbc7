"""Screenshots of TensorBoard's dashboards for two short real runs (DoG and default init).

    .venv/bin/python scripts/tensorboard_screenshots.py [--data ../shared/data/cifar10-mini]
        [--out docs/tensorboard] [--epochs 3] [--batches 10] [--logs DIR]

1. trains the quickstart recipe twice (``configs/init/dog.yaml`` and the model's own init), a
   few batches per epoch, into a temporary log folder (or ``--logs``);
2. starts ``tensorboard --logdir`` on 127.0.0.1 (a free port);
3. takes a screenshot of the HParams, Custom Scalars, Images and Text dashboards in headless
   Chromium (Debian's ``chromium``: ``apt-get install chromium``), and writes them to ``--out``.

Chromium runs with no network other than the local TensorBoard (background networking, sync
and component updates off) and without GPU or WebGL, so the charts render in software.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = {  # file name -> the dashboard's URL fragment
    "hparams": "hparams",
    "custom_scalars": "custom_scalars&_smoothingWeight=0&_ignoreYOutliers=false",  # as `make tensorboard` links
    "images": "images",
    "text": "text",
}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-webgl",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def train(logs: Path, data: Path, epochs: int, batches: int) -> None:
    for init in ("dog", "none"):
        command = [
            sys.executable,
            str(REPO / "run.py"),
            "fit",
            "--config",
            str(REPO / "configs/cifar10/quickstart.yaml"),
            "--config",
            str(REPO / f"configs/init/{init}.yaml"),
            "--data.root",
            str(data),
            "--trainer.max_epochs",
            str(epochs),
            "--trainer.limit_train_batches",
            str(batches),
            "--trainer.limit_val_batches",
            "3",
            "--trainer.log_every_n_steps",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.logger.init_args.save_dir",
            str(logs),
        ]
        print(f"training: {init} init, {epochs} epochs of {batches} batches", flush=True)
        subprocess.run(
            command,
            check=True,
            cwd=logs.parent,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
        )


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def tensorboard(logs: Path):
    port = free_port()
    binary = Path(sys.executable).with_name("tensorboard")
    server = subprocess.Popen(
        [str(binary), "--logdir", str(logs), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(120):  # up to a minute for the server to answer
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise SystemExit("error: tensorboard did not start; run it by hand to see why")
        time.sleep(3)  # let it load the event files
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def screenshot(chromium: str, url: str, path: Path, profile: Path) -> None:
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1400,1000",
            "--virtual-time-budget=25000",
            f"--screenshot={path}",
            url,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=180,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cifar10-mini")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "tensorboard")
    parser.add_argument("--logs", type=Path, help="log folder to use (default: train into a temporary one)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("error: no chromium on PATH; install Debian's package: apt-get install chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        logs = args.logs
        if logs is None:
            if not (args.data / "cifar-10-batches-py").is_dir():
                raise SystemExit(f"error: no CIFAR-10 batches under {args.data}; pass --data (or --logs)")
            logs = Path(tmp) / "logs"
            logs.mkdir()
            train(logs, args.data.resolve(), args.epochs, args.batches)
        with tensorboard(logs.resolve()) as url:
            for name, fragment in DASHBOARDS.items():
                path = args.out / f"{name}.png"
                screenshot(chromium, f"{url}#{fragment}", path, Path(tmp) / f"profile-{name}")
                print(f"wrote {path}")


if __name__ == "__main__":
    main()
