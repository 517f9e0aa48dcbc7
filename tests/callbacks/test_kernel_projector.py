"""KernelProjector: the kernels as a TensorBoard Projector embedding, read back from disk."""

import csv

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image

from callbacks import KernelProjector
from callbacks.kernel_projector import (
    MAX_SPRITE_SIDE,
    METADATA_HEADER,
    change_word,
    embedding,
    sample_indices,
    sprite_capacity,
    sprite_side,
)
from datamodules import CIFAR10DataModule
from lightning_modules import ImageClassifier
from neural_echos.collect import LayerKernels
from neural_echos.errors import ConfigError
from neural_echos.taxonomy import DETAILED_CLASSES

STEPS_PER_EPOCH = 3


def _read_config(run):
    text = (run / "projector_config.pbtxt").read_text()
    blocks = [block for block in text.split("embeddings {") if block.strip()]
    return [
        {
            line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip().strip('"')
            for line in block.splitlines()
            if ":" in line
        }
        for block in blocks
    ], text


@pytest.mark.slow
def test_first_and_last_snapshots_are_readable_projector_embeddings(tmp_path, cifar_root):
    pl.seed_everything(0)
    projector = KernelProjector(max_kernels=500, thumbnail=20)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=STEPS_PER_EPOCH,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=TensorBoardLogger(tmp_path, name="proj", version=0),
        callbacks=[projector],
    )
    module = ImageClassifier(num_classes=10, image_size=32)
    trainer.fit(module, datamodule=CIFAR10DataModule(root=str(cifar_root), batch_size=8))
    assert projector.steps == [0, STEPS_PER_EPOCH - 1]
    run = tmp_path / "proj" / "version_0"
    embeddings, text = _read_config(run)
    assert len(embeddings) == 2 and "single_image_dim: 20" in text
    metadata = []
    for entry, step in zip(embeddings, projector.steps, strict=True):
        assert entry["tensor_name"] == f"depthwise_kernels:{str(step).zfill(5)}"
        with open(run / entry["metadata_path"]) as f:
            rows = list(csv.reader(f, delimiter="\t"))
        assert rows[0] == METADATA_HEADER
        assert len(rows) - 1 == 500  # of the 1,840 kernels, sampled evenly
        assert {row[0] for row in rows[1:]} <= set(DETAILED_CLASSES)
        assert rows[1][2] == "stages.0.blocks.0.conv_dw" and rows[-1][2] == "stages.3.blocks.1.conv_dw"
        metadata.append(rows[1:])
    first, last = metadata
    assert all(row[6] == "kept" and row[5] == row[0] for row in first)
    assert [row[5] for row in last] == [row[0] for row in first]  # the same kernels, their first class
    assert all(
        row[6] == change_word(DETAILED_CLASSES.index(row[5]), DETAILED_CLASSES.index(row[0])) for row in last
    )
    for entry in embeddings:
        sprite = Image.open(run / entry["image_path"])  # sprite { image_path: ... }
        assert sprite.size == (sprite_side(500, 20),) * 2 == (460, 460)
        with open(run / entry["tensor_path"]) as f:
            vectors = [list(map(float, line.split("\t"))) for line in f]
        assert len(vectors) == 500 and len(vectors[0]) == 49
        assert sum(v * v for v in vectors[0]) == pytest.approx(1.0, abs=1e-4)  # L2-normalised kernels


@given(st.integers(4, MAX_SPRITE_SIDE))
def test_the_sampled_sprite_never_exceeds_the_projector_cap(thumbnail):
    capacity = sprite_capacity(thumbnail)
    assert sprite_side(capacity, thumbnail) <= MAX_SPRITE_SIDE
    assert sprite_side(capacity + 1, thumbnail) > MAX_SPRITE_SIDE  # the cap is tight


@given(st.integers(0, 5000), st.integers(1, 5000))
def test_sampling_is_even_deterministic_and_bounded(total, count):
    chosen = sample_indices(total, count)
    assert len(chosen) == min(total, count) and (chosen == sample_indices(total, count)).all()
    assert len(set(chosen.tolist())) == len(chosen) and (chosen < max(total, 1)).all()


def test_mixed_kernel_sizes_are_centred_in_the_largest():
    layers = [
        LayerKernels("a", "a.weight", torch.ones(3, 3, 3)),
        LayerKernels("b", "b.weight", torch.ones(2, 5, 5)),
    ]
    vectors, thumbnails, rows = embedding(
        layers, [np.zeros(3, dtype=np.int64), np.zeros(2, dtype=np.int64)], 10, 24
    )
    assert vectors.shape == (5, 25) and thumbnails.shape == (5, 3, 24, 24)
    first = vectors[0].reshape(5, 5)
    assert first[0].abs().sum() == 0 and first[1:4, 1:4].abs().min() > 0  # 3x3 in the centre of 5x5
    assert [row[4] for row in rows] == ["3x3"] * 3 + ["5x5"] * 2
    assert 0.0 <= float(thumbnails.min()) and float(thumbnails.max()) <= 1.0


def test_bad_settings_are_config_errors():
    for kwargs, words in (
        ({"every_n_epochs": -1}, "every_n_epochs"),
        ({"max_kernels": 0}, "max_kernels"),
        ({"thumbnail": 2}, "thumbnail"),
    ):
        with pytest.raises(ConfigError, match=words):
            KernelProjector(**kwargs)


def test_change_words_follow_the_center_surround_crossings():
    on, off, blob, other = (DETAILED_CLASSES.index(n) for n in ("on_center", "off_center", "blob", "other"))
    assert change_word(blob, blob) == "kept" and change_word(on, off) == "changed"
    assert change_word(other, on) == "gained on/off" and change_word(off, blob) == "lost on/off"
    assert change_word(blob, other) == "changed"
    projector = KernelProjector()
    assert projector.state_dict() == {}
    projector.first_detail = np.array([on, other])
    restored = KernelProjector()
    restored.load_state_dict(projector.state_dict())
    assert restored.first_detail.tolist() == [on, other]
