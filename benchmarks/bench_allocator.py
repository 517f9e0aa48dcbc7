"""Training images/s with glibc malloc (baseline) vs mimalloc preloaded (LD_PRELOAD).

The allocator cannot change inside a running process, so each measurement is a child process
running the same few training steps; children alternate (glibc, mimalloc, glibc, ...) and the
ratio of the medians is printed. Default model: a small ConvMixer at CIFAR size, whose large
activations make glibc's malloc return memory to the OS and page-fault it back every step.

    .venv/bin/python benchmarks/bench_allocator.py [--model convmixer] [--pairs 3]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import sysconfig

from _common import REPO, machine, median

CHILD = r"""
import json, sys, time, torch, timm
sys.path.insert(0, {repo!r})
import neural_echos.models
args = json.loads(sys.argv[1])
torch.manual_seed(0)
model = timm.create_model(args["model"], num_classes=10, **args["kwargs"]).to(memory_format=torch.channels_last)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
x = torch.randn(args["batch"], 3, 32, 32).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (args["batch"],))
def step():
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
for _ in range(args["warmup"]):
    step()
start = time.perf_counter()
for _ in range(args["steps"]):
    step()
print(json.dumps({{"img_per_s": args["steps"] * args["batch"] / (time.perf_counter() - start)}}))
"""


def mimalloc_path() -> str:
    found = glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "cmeel.prefix", "lib", "libmimalloc.so"))
    if not found:
        sys.exit("mimalloc not found: install requirements.txt (package cmeel-mimalloc)")
    return found[0]


def run_child(args: dict, preload: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if preload:
        env["LD_PRELOAD"] = preload
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(repo=str(REPO)), json.dumps(args)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["img_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="convmixer")
    parser.add_argument(
        "--kwargs",
        default='{"dim": 256, "depth": 4, "kernel_size": 5, "patch_size": 2}',
        help="JSON model kwargs (default: ConvMixer-256/4, k5, p2)",
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3)
    cli = parser.parse_args()
    args = {
        "model": cli.model,
        "kwargs": json.loads(cli.kwargs),
        "batch": cli.batch,
        "steps": cli.steps,
        "warmup": cli.warmup,
    }
    preload = mimalloc_path()
    print(f"machine: {machine()}")
    print(
        f"model {cli.model} {cli.kwargs}, batch {cli.batch}, 32x32, channels_last, {cli.steps} timed steps per child"
    )
    glibc, mimalloc = [], []
    for pair in range(cli.pairs):
        glibc.append(run_child(args, None))
        mimalloc.append(run_child(args, preload))
        print(
            f"pair {pair}: glibc {glibc[-1]:7.1f} img/s   mimalloc {mimalloc[-1]:7.1f} img/s   ratio "
            f"{mimalloc[-1] / glibc[-1]:.2f}"
        )
    print(
        f"median: glibc malloc {median(glibc):.1f} img/s (baseline), mimalloc {median(mimalloc):.1f} img/s, "
        f"ratio {median(mimalloc) / median(glibc):.2f}x"
    )


if __name__ == "__main__":
    main()
