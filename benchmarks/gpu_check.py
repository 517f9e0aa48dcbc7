"""One prepared GPU check (at most ~8 minutes on one GPU): figures and ratios measured in one run.

1. Training throughput, ``convnext_tiny`` at 224x224, synthetic data already on the device, the
   same AdamW and schedule, in fp32, bf16-mixed and bf16-mixed + torch.compile:
   a plain PyTorch loop (the baseline), timm's train-loop equivalent (timm's loss, scheduler
   ``step_update`` and ``optimizer.zero_grad()`` as timm's train.py does them) and our
   ``ImageClassifier`` under the Lightning Trainer. Ratios: each against the plain loop.
2. The ImageNet loader in images/s on generated JPEGs: ``pipeline=workers`` (PIL + timm in the
   DataLoader workers) against ``pipeline=device`` (bytes from the workers, nvJPEG decoding and
   timm's augmentation on the device), each batch brought to the device, normalised and erased.
3. DoG init of every depthwise kernel of the model on the device (ms).
4. One kernel snapshot as a share of an ImageNet epoch (1,281,167 images at the Lightning
   bf16 throughput of 1.).
5. A 1-GPU DDP fit (``strategy=ddp``, one process) against the plain Lightning fit of 1.

``--smoke`` runs the same code paths on the CPU in tiny sizes (convnext_atto at 32x32, a few
steps, one block per stage, 24 JPEGs, torch.compile with the ``aot_eager`` backend instead of inductor's code
generation), so that the tests keep the script working; its figures mean nothing.

    .venv/bin/python benchmarks/gpu_check.py            # on a GPU machine
    .venv/bin/python benchmarks/gpu_check.py --smoke    # anywhere, < 1 minute of CPU
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import lightning.pytorch as pl
import timm
import torch
from _common import REPO, machine  # noqa: F401  (REPO: puts the repository on sys.path)
from lightning.pytorch.callbacks import Callback
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler

from callbacks import KernelSnapshot
from lightning_modules import ImageClassifier
from neural_echos import initialize_depthwise

IMAGENET_TRAIN_IMAGES = 1_281_167


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_batch(cfg, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.batch, 3, cfg.size, cfg.size, generator=g).to(device)
    y = torch.randint(0, cfg.classes, (cfg.batch,), generator=g).to(device)
    return x.contiguous(memory_format=torch.channels_last), y


# ----------------------------------------------------------------------------- 1. training loops


def _model_and_optimizer(cfg, device, compile_: bool):
    torch.manual_seed(0)
    model = timm.create_model(cfg.model, num_classes=cfg.classes, **cfg.model_kwargs)
    model = model.to(device).to(memory_format=torch.channels_last)
    if compile_:
        model.compile(backend=cfg.compile_backend)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05, filter_bias_and_bn=True)
    return model, optimizer


def plain_loop(cfg, device, precision: str, compile_: bool) -> float:
    model, optimizer = _model_and_optimizer(cfg, device, compile_)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    x, y = synthetic_batch(cfg, device)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16-mixed" else nullcontext()
    )
    for step in range(cfg.warmup + cfg.steps):
        if step == cfg.warmup:
            sync(device)
            start = time.perf_counter()
        with autocast:
            loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(device)
    return cfg.steps * cfg.batch / (time.perf_counter() - start)


def timm_loop(cfg, device, precision: str, compile_: bool) -> float:
    """What timm's train.py does per step: timm's loss, amp autocast, ``zero_grad``, backward,
    step, then ``lr_scheduler.step_update(num_updates)``."""
    model, optimizer = _model_and_optimizer(cfg, device, compile_)
    criterion = LabelSmoothingCrossEntropy(smoothing=0.1)
    total = cfg.warmup + cfg.steps
    scheduler = CosineLRScheduler(optimizer, t_initial=total, warmup_t=1, t_in_epochs=False)
    x, y = synthetic_batch(cfg, device)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16-mixed" else nullcontext()
    )
    for step in range(total):
        if step == cfg.warmup:
            sync(device)
            start = time.perf_counter()
        with autocast:
            loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step_update(num_updates=step + 1)
    sync(device)
    return cfg.steps * cfg.batch / (time.perf_counter() - start)


class StepClock(Callback):
    def __init__(self, warmup: int, device: torch.device):
        self.warmup, self.device, self.start, self.end = warmup, device, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            sync(self.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        sync(self.device)
        self.end = time.perf_counter()


def lightning_fit(
    cfg, device, precision: str, compile_: bool, strategy: str = "auto", snapshot: bool = False
):
    x, y = synthetic_batch(cfg, device)
    data = torch.utils.data.DataLoader([(x, y)] * (cfg.warmup + cfg.steps), batch_size=None)
    pl.seed_everything(0, verbose=False)
    module = ImageClassifier(
        model_name=cfg.model,
        model_kwargs=cfg.model_kwargs,
        num_classes=cfg.classes,
        image_size=cfg.size,
        lr=1e-3,
        compile=compile_,
        compile_backend=cfg.compile_backend,
    )
    clock = StepClock(cfg.warmup, device)
    callbacks = [clock]
    snap = KernelSnapshot(every_n_epochs=0)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            accelerator=device.type if device.type == "cpu" else "gpu",
            devices=1,
            strategy=strategy,
            precision=precision,
            max_steps=cfg.warmup + cfg.steps,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=pl.loggers.TensorBoardLogger(tmp, name="gpu_check") if snapshot else False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=callbacks,
            default_root_dir=tmp,
        )
        trainer.fit(module, train_dataloaders=data)
        rate = cfg.steps * cfg.batch / (clock.end - clock.start)
        seconds = None
        if snapshot:  # 4. one snapshot of the trained model, as the callback takes it
            times = []
            for _ in range(3):
                start = time.perf_counter()
                snap.snapshot(trainer, module, step=trainer.global_step)
                times.append(time.perf_counter() - start)
            seconds = statistics.median(times)
            trainer.logger.experiment.close()  # before the folder goes
    return rate, seconds


# ----------------------------------------------------------------------------- 2. loaders


def loader_rates(cfg, device) -> dict[str, float]:
    from bench_imagenet_pipeline import make_tree

    from datamodules.imagenet import ImageNetDataModule

    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_tree(root, cfg.jpegs, classes=4, processes=2)
        for pipeline in ("workers", "device"):
            dm = ImageNetDataModule(
                str(root),
                batch_size=cfg.loader_batch,
                num_workers=cfg.workers,
                image_size=cfg.size,
                pipeline=pipeline,
                persistent_workers=True,
            )
            dm.trainer = type("T", (), {"training": True})()
            dm.setup("fit")
            loader = dm.train_dataloader()
            per_epoch = []
            for epoch in range(cfg.loader_epochs):
                start, count = None, 0
                for batch in loader:
                    _images, labels = dm.on_after_batch_transfer(
                        dm.transfer_batch_to_device(batch, device, 0), 0
                    )
                    if start is None:  # from the first batch: worker start-up excluded
                        sync(device)
                        start = time.perf_counter()
                        continue
                    count += len(labels)
                sync(device)
                if count:
                    per_epoch.append(count / (time.perf_counter() - start))
            rates[pipeline] = statistics.median(per_epoch) if per_epoch else float("nan")
    return rates


# ----------------------------------------------------------------------------- 3. DoG init


def dog_init_ms(cfg, device) -> float:
    model = timm.create_model(cfg.model, num_classes=cfg.classes, **cfg.model_kwargs).to(device)
    times = []
    for seed in range(5):
        sync(device)
        start = time.perf_counter()
        initialize_depthwise(model, "dog", seed=seed)
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="the same code paths on the CPU, tiny sizes")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per case")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the loader check")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.smoke:
        # a one-block-per-stage ConvNeXt: the same code, a fraction of the graph to trace
        cfg = argparse.Namespace(
            model="convnext_atto",
            model_kwargs={"depths": (1, 1, 1, 1), "dims": (8, 16, 32, 64)},
            size=32,
            batch=4,
            classes=10,
            warmup=2,
            steps=2,
            compile_backend="aot_eager",
            jpegs=24,
            workers=1,
            loader_batch=4,
            loader_epochs=2,
        )
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA device: run on a GPU machine, or use --smoke for the CPU code-path check")
        cfg = argparse.Namespace(
            model="convnext_tiny",
            model_kwargs={},
            size=224,
            batch=128,
            classes=1000,
            warmup=10,
            steps=args.steps,
            compile_backend="inductor",
            jpegs=2000,
            workers=args.workers,
            loader_batch=128,
            loader_epochs=2,
        )
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU smoke run)"
    print(f"machine: {machine()}; GPU: {gpu}; timm {timm.__version__}, lightning {pl.__version__}")
    print(
        f"model {cfg.model} at {cfg.size}x{cfg.size}, batch {cfg.batch}, {cfg.steps} timed steps after {cfg.warmup}"
        + ("  [SMOKE: code paths only, figures meaningless]" if args.smoke else "")
    )

    print("\n1. training images/s (synthetic data on the device); ratio against the plain loop")
    results = {}
    for precision, compile_ in (("32-true", False), ("bf16-mixed", False), ("bf16-mixed", True)):
        label = precision + (f" + compile ({cfg.compile_backend})" if compile_ else "")
        plain = plain_loop(cfg, device, precision, compile_)
        timm_rate = timm_loop(cfg, device, precision, compile_)
        ours, _ = lightning_fit(cfg, device, precision, compile_)
        results[label] = ours
        print(
            f"  {label:34s} plain {plain:8.1f}   timm {timm_rate:8.1f} ({timm_rate / plain:.3f})   "
            f"ImageClassifier+Trainer {ours:8.1f} ({ours / plain:.3f})"
        )

    print(
        f"\n2. ImageNet loader, {cfg.jpegs} generated JPEGs, {cfg.workers} worker(s), batch "
        f"{cfg.loader_batch}, to {device}"
    )
    rates = loader_rates(cfg, device)
    print(
        f"  pipeline=workers {rates['workers']:8.1f} img/s   pipeline=device {rates['device']:8.1f} img/s   "
        f"device / workers {rates['device'] / rates['workers']:.2f}"
    )

    print(
        f"\n3. DoG init of all depthwise kernels of {cfg.model} on {device}: {dog_init_ms(cfg, device):.2f} ms"
    )

    bf16 = "bf16-mixed"
    rate, seconds = lightning_fit(cfg, device, bf16, False, snapshot=True)
    epoch = IMAGENET_TRAIN_IMAGES / rate
    print(
        f"\n4. one kernel snapshot: {seconds * 1e3:.0f} ms = {seconds / epoch:.4%} of an ImageNet epoch "
        f"({epoch / 60:.1f} min at {rate:.0f} img/s, bf16-mixed)"
    )

    ddp, _ = lightning_fit(cfg, device, bf16, False, strategy="ddp")
    print(
        f"\n5. 1-device DDP fit, bf16-mixed: {ddp:.1f} img/s; against the plain Lightning fit "
        f"({results[bf16]:.1f}): {ddp / results[bf16]:.3f}"
    )


if __name__ == "__main__":
    main()
