"""neural_echos/cli: resumes that cannot surprise and run folders that never mix two runs.

One small run is trained once (module fixture); each test works on its own copy of it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

import run
from neural_echos import cli
from neural_echos.cli import run_config, run_folders
from tests.conftest import write_cifar10_tree

REPO = Path(__file__).resolve().parents[3]
TINY = [
    "--model.model_name",
    "convmixer",
    "--model.model_kwargs",
    "{dim: 16, depth: 2, kernel_size: 5, patch_size: 4}",
    "--trainer.limit_train_batches",
    "2",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--snapshot.every_n_epochs",
    "0",
]


def _args(cifar_root: Path, *extra: str, version: str | None = "r") -> list[str]:
    args = [
        "fit",
        "--config",
        str(REPO / "configs/cifar10/quickstart.yaml"),
        "--data.root",
        str(cifar_root),
        *TINY,
    ]
    if version is not None:
        args += ["--trainer.logger.init_args.version", version]
    return [*args, *extra]


def _error(capsys, args: list[str]) -> str:
    """Run ``run.py`` in this process; it must exit with status 2 after one ``error:`` line."""
    with pytest.raises(SystemExit) as exit_info:
        run.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 1-epoch run, seed 3, batch size 8, in logs/quickstart/none/r."""
    root = tmp_path_factory.mktemp("trained")
    cifar_root = write_cifar10_tree(root / "cifar10")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        cli.main(
            _args(cifar_root, "--trainer.max_epochs", "1", "--seed_everything", "3", "--data.batch_size", "8")
        )
    return root, cifar_root


@pytest.fixture
def run_copy(trained, tmp_path, monkeypatch):
    """The trained run copied into a fresh working directory (the test's current directory)."""
    root, cifar_root = trained
    shutil.copytree(root / "logs", tmp_path / "logs")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "logs" / "quickstart" / "none" / "r", cifar_root


def test_unset_settings_and_the_seed_come_from_the_checkpoint(run_copy, monkeypatch):
    folder, cifar_root = run_copy
    original = (folder / "config.yaml").read_bytes()
    # a resume without --seed_everything and without the batch size the run was trained with
    resumed = cli.main(_args(cifar_root, "--trainer.max_epochs", "2", "--ckpt_path", "last"))
    assert resumed.trainer.global_step == 4
    assert resumed.config.fit.seed_everything == 3 and resumed.datamodule.batch_size == 8
    assert resumed.datamodule.train_dataloader().sampler.seed == 3  # the data order of the run
    # passed explicitly (the one source of the run's seed, callbacks.rng_state.run_seed), not read from PL_GLOBAL_SEED
    monkeypatch.setenv("PL_GLOBAL_SEED", "11")
    assert resumed.datamodule.train_dataloader().sampler.seed == 3
    assert (folder / "config.yaml").read_bytes() == original  # provenance kept
    saved = yaml.safe_load((folder / "config.resume-1.yaml").read_text())
    assert saved["seed_everything"] == 3 and saved["ckpt_path"].endswith("checkpoints/last.ckpt")


def test_conflicting_settings_are_an_error_that_lists_them(run_copy, capsys):
    folder, cifar_root = run_copy
    line = _error(
        capsys,
        _args(
            cifar_root,
            "--trainer.max_epochs",
            "2",
            "--ckpt_path",
            "last",
            "--model.lr",
            "1e-5",
            "--data.batch_size",
            "32",
            "--seed_everything",
            "5",
        ),
    )
    assert "model.lr 1e-05 (given) vs 0.002 (checkpoint)" in line
    assert "data.batch_size 32 (given) vs 8 (checkpoint)" in line and "seed_everything 5 (given) vs 3" in line
    assert f"--config {folder.resolve() / 'config.yaml'}" in line
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        p.name for p in folder.iterdir() if "resume" not in p.name
    )


def test_the_runs_own_config_resumes_it(run_copy):
    folder, _ = run_copy
    resumed = cli.main(
        ["fit", "--config", str(folder / "config.yaml"), "--trainer.max_epochs", "2", "--ckpt_path", "last"]
    )
    assert resumed.trainer.global_step == 4


def test_a_runs_checkpoint_resumes_into_its_folder_when_no_version_is_given(run_copy):
    """A run started without a fixed version (the quickstart) resumed by its checkpoint file:
    the same folder and TensorBoard run, not a new version_N."""
    folder, cifar_root = run_copy
    ckpt = folder / "checkpoints" / "last.ckpt"
    resumed = cli.main(_args(cifar_root, "--trainer.max_epochs", "2", "--ckpt_path", str(ckpt), version=None))
    assert resumed.trainer.global_step == 4 and Path(resumed.trainer.log_dir).resolve() == folder.resolve()
    assert (folder / "config.resume-1.yaml").is_file()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["r"]  # no version_0 beside it
    tested = cli.main(
        [
            "test",
            "--config",
            str(REPO / "configs/cifar10/quickstart.yaml"),
            "--data.root",
            str(cifar_root),
            *TINY,
            "--ckpt_path",
            str(ckpt),
        ]
    )
    assert (
        Path(tested.trainer.log_dir).resolve() == folder.resolve()
        and (folder / "config.test-1.yaml").is_file()
    )
    assert sorted(p.name for p in folder.parent.iterdir()) == ["r"]


def test_a_checkpoint_outside_the_loggers_folders_starts_a_new_version(run_copy, tmp_path):
    folder, cifar_root = run_copy
    elsewhere = tmp_path / "copied" / "last.ckpt"
    elsewhere.parent.mkdir()
    shutil.copy(folder / "checkpoints" / "last.ckpt", elsewhere)
    resumed = cli.main(
        _args(cifar_root, "--trainer.max_epochs", "2", "--ckpt_path", str(elsewhere), version=None)
    )
    assert resumed.trainer.global_step == 4 and Path(resumed.trainer.log_dir).name == "version_0"
    assert not (folder / "config.resume-1.yaml").exists()


def test_a_fixed_version_that_holds_a_run_refuses_a_fresh_fit(run_copy, capsys):
    folder, cifar_root = run_copy
    before = sorted(p.name for p in folder.iterdir())
    line = _error(capsys, _args(cifar_root, "--trainer.max_epochs", "1"))
    assert "already holds a run" in line and "--ckpt_path last" in line
    assert (
        sorted(p.name for p in folder.iterdir()) == before
    )  # nothing written into it, not even an event file


def test_another_runs_checkpoint_cannot_resume_into_a_run_folder(run_copy, capsys):
    folder, cifar_root = run_copy
    other = folder.parent / "other"
    shutil.copytree(folder, other)
    line = _error(
        capsys,
        _args(
            cifar_root, "--ckpt_path", str(other / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "2"
        ),
    )
    assert "is not one of its checkpoints" in line


def test_a_second_process_cannot_train_into_a_locked_run_folder(run_copy, capsys):
    folder, cifar_root = run_copy
    lock = run_folders.lock_run_folder(folder)  # as a fit running in another process holds it
    try:
        line = _error(capsys, _args(cifar_root, "--ckpt_path", "last", "--trainer.max_epochs", "2"))
    finally:
        lock.close()
    assert "another process is training into" in line


def test_ckpt_path_last_with_no_checkpoint_is_an_error(run_copy, capsys):
    _, cifar_root = run_copy
    assert "no last checkpoint in" in _error(
        capsys, _args(cifar_root, "--ckpt_path", "last", version="never")
    )
    assert "--trainer.logger.init_args.version is not set" in _error(
        capsys, _args(cifar_root, "--ckpt_path", "last", version=None)
    )
    assert not (Path("logs/quickstart/none/never")).exists()


def test_last_if_any_starts_a_run_then_resumes_it(cifar_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = cli.main(
        _args(
            cifar_root,
            "--trainer.max_epochs",
            "1",
            "--data.batch_size",
            "16",
            "--ckpt_path",
            "last-if-any",
            version="s",
        )
    )
    assert first.trainer.global_step == 2 and first.config.fit.ckpt_path is None
    again = cli.main(
        _args(
            cifar_root,
            "--trainer.max_epochs",
            "2",
            "--data.batch_size",
            "16",
            "--ckpt_path",
            "last-if-any",
            version="s",
        )
    )
    assert again.trainer.global_step == 4
    assert sorted(p.name for p in (tmp_path / "logs/quickstart/none/s").glob("config*.yaml")) == [
        "config.resume-1.yaml",
        "config.yaml",
    ]


def test_validate_in_a_run_folder_writes_its_own_config(run_copy):
    folder, cifar_root = run_copy
    args = _args(cifar_root, "--ckpt_path", str(folder / "checkpoints" / "last.ckpt"))
    args[0] = "validate"
    original = (folder / "config.yaml").read_bytes()
    cli.main(args)
    assert (folder / "config.yaml").read_bytes() == original and (folder / "config.validate-1.yaml").is_file()


def test_a_fit_that_fails_at_start_leaves_no_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = _error(
        capsys,
        _args(tmp_path / "nowhere", "--data.download", "false", "--trainer.max_epochs", "1", version=None),
    )
    assert "CIFAR-10 root" in line
    assert not (tmp_path / "logs" / "quickstart").exists() or not any(
        (tmp_path / "logs" / "quickstart").iterdir()
    )


def test_an_empty_training_set_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    empty = write_cifar10_tree(tmp_path / "empty", images_per_batch=0)
    assert "training set" in _error(capsys, _args(empty, "--trainer.max_epochs", "1"))
    one = write_cifar10_tree(tmp_path / "one", images_per_batch=1)
    line = _error(capsys, _args(one, "--trainer.max_epochs", "1", "--data.val_split", "0.95", version="v"))
    assert "is empty after holding out val_split=0.95" in line


def _bad_checkpoint(kind: str, folder: Path) -> Path:
    if kind == "missing":
        return folder / "missing.ckpt"
    if kind == "folder":
        return folder
    path = folder / f"{kind}.ckpt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"\x80\x02junk" * 99)
    elif kind == "state-dict":
        torch.save({"w": torch.zeros(2)}, path)
    return path


def test_any_datamodule_with_an_empty_training_set_is_an_error(cifar_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = _args(
        cifar_root,
        "--trainer.max_epochs",
        "1",
        "--data",
        "tests.helpers.empty_train_data.EmptyTrainingSet",
        "--data.root",
        str(cifar_root),
    )
    assert "the training set is empty (0 batches)" in _error(capsys, args)


def test_config_yaml_is_never_overwritten_by_a_process_that_raced_for_it(tmp_path):
    from types import SimpleNamespace

    from jsonargparse import Namespace

    from neural_echos.errors import ResumeError

    (tmp_path / "config.yaml").write_text("seed_everything: 1\n")
    parser = SimpleNamespace(dump=lambda config, skip_none: "seed_everything: 2\n")
    trainer = SimpleNamespace(
        is_global_zero=True,
        loggers=[object()],
        log_dir=str(tmp_path),
        default_root_dir=str(tmp_path),
        strategy=SimpleNamespace(broadcast=lambda value: value),
    )
    saver = run_config.RunConfig(parser, Namespace(ckpt_path=None))
    with pytest.raises(ResumeError, match="written by another process"):
        saver.setup(trainer, None, "fit")
    assert (tmp_path / "config.yaml").read_text() == "seed_everything: 1\n"
    resumed = run_config.RunConfig(parser, Namespace(ckpt_path="x.ckpt"))
    resumed.setup(trainer, None, "fit")
    assert (tmp_path / "config.resume-1.yaml").read_text() == "seed_everything: 2\n"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "does not exist"),
        ("folder", "is a folder; pass a .ckpt file"),
        ("empty", "is empty (0 bytes)"),
        ("garbage", "not a zip archive"),
        ("state-dict", "not a Lightning checkpoint"),
    ],
)
def test_a_bad_ckpt_path_is_one_error_line(kind, message, tmp_path, cifar_root, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    path = _bad_checkpoint(kind, tmp_path / "d")
    assert message in _error(capsys, _args(cifar_root, "--ckpt_path", str(path), version=None))
    assert message in _error(capsys, ["test", *_args(cifar_root, "--ckpt_path", str(path), version=None)[1:]])


def test_a_weights_only_checkpoint_cannot_resume_a_fit(run_copy, capsys):
    folder, cifar_root = run_copy
    checkpoint = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    for key in ("optimizer_states", "lr_schedulers", "loops", "callbacks"):
        checkpoint.pop(key, None)
    torch.save(checkpoint, folder / "weights.ckpt")
    assert "holds weights only" in _error(
        capsys, _args(cifar_root, "--ckpt_path", str(folder / "weights.ckpt"), version=None)
    )


@pytest.mark.slow
def test_sweep_resume_continues_a_sweep(tmp_path, cifar_root):
    """scripts/sweep.sh --resume (--ckpt_path last-if-any): the run of the first sweep continues."""
    logs = tmp_path / "logs"

    def sweep(max_epochs: int, *options: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                "bash",
                str(REPO / "scripts/sweep.sh"),
                "configs/experiments/cifar10/convmixer_256_8.yaml",
                "--inits",
                "dog",
                "--seeds",
                "0",
                "--tag",
                "t",
                "--save-dir",
                str(logs),
                *options,
                "--",
                "--data.root",
                str(cifar_root),
                "--data.download",
                "false",
                "--data.batch_size",
                "16",
                "--trainer.limit_train_batches",
                "2",
                "--trainer.limit_val_batches",
                "1",
                "--trainer.enable_progress_bar",
                "false",
                "--trainer.enable_model_summary",
                "false",
                "--trainer.accelerator",
                "cpu",
                "--snapshot.every_n_epochs",
                "0",
                "--model.model_kwargs",
                "{dim: 16, depth: 2, kernel_size: 5, patch_size: 4}",
                "--trainer.max_epochs",
                str(max_epochs),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )

    first = sweep(1)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    (folder,) = logs.glob("*/*/seed0-t")  # <experiment>/<init method>/<version>
    again = sweep(2, "--resume")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert (folder / "config.resume-1.yaml").is_file()


def test_under_slurm_the_hpc_checkpoint_lives_in_the_run_folder(trained, tmp_path, monkeypatch):
    """Lightning saves hpc_ckpt_N.ckpt into, and a SLURM job resumes from, default_root_dir: the run
    folder, not the submit directory, where an earlier job's checkpoint would be resumed by a new run."""
    root, cifar_root = trained
    monkeypatch.chdir(tmp_path)
    stale = next((root / "logs").rglob("last.ckpt"))
    shutil.copy(stale, tmp_path / "hpc_ckpt_1.ckpt")  # left in the submit directory by another job
    job = {
        "SLURM_JOB_ID": "5123",
        "SLURM_JOB_NAME": "ne",
        "SLURM_NNODES": "1",
        "SLURM_NODELIST": "127.0.0.1",
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
    }
    for key, value in job.items():
        monkeypatch.setenv(key, value)
    fit = cli.main(
        _args(
            cifar_root,
            "--trainer.max_epochs",
            "1",
            "--seed_everything",
            "3",
            "--data.batch_size",
            "8",
            version="slurm-5123",
        )
    )
    assert (
        fit.trainer.ckpt_path is None and fit.trainer.global_step == 2
    )  # a new run, not the stale checkpoint's
    assert (
        Path(fit.trainer.default_root_dir).resolve()
        == tmp_path / "logs" / "quickstart" / "none" / "slurm-5123"
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            ["--init.method", "DogInit"],
            "--init.method: unknown class 'DogInit'; did you mean DoGInit? choose one of ",
        ),
        (["--init.method", "dog"], "--init.method: unknown class 'dog'; did you mean DoGInit?"),
        (
            ["--snapshot.classifier", "TemplateClassifer"],
            (
                "--snapshot.classifier: unknown class 'TemplateClassifer'; did you mean "
                "TemplateClassifier? choose one of "
                "KMeansClassifier, TemplateClassifier"
            ),
        ),
        (
            ["--init.method", "DoGInit", "--init.method.scale", "big"],
            (
                "--init.method.scale (DoGInit): Expected a typing.Literal['unit', 'kaiming', 'match']. Got value: big "
                "(run `python run.py fit --init.method.help DoGInit` for its options)"
            ),
        ),
        (
            ["--init.method", "DoGInit", "--init.method.gain", "2"],
            "--init.method (DoGInit): Option 'gain' is not accepted",
        ),
        (
            ["--data.nosuch", "1"],
            (
                "--data (CIFAR10DataModule): Option 'nosuch' is not accepted (run `python run.py fit "
                "--data.help CIFAR10DataModule` for its options)"
            ),
        ),
        (
            ["--config", str(REPO / "configs/init/covariance_transfer.yaml")],
            "--init.method (CovarianceTransferInit): the following arguments are required: checkpoint",
        ),
    ],
)
def test_errors_of_class_valued_options_say_what_is_wrong(cifar_root, capsys, extra, expected):
    """jsonargparse lists every Union member it tried (InitMethod, NoneType) and nests another
    parser's hint; the line keeps the option, the class and what is wrong with it."""
    line = _error(capsys, _args(cifar_root, *extra))
    assert expected in line
    assert "Union subtypes" not in line and "NoneType" not in line and line.count("(run `python") == 1


def test_a_misspelt_option_gets_a_did_you_mean(cifar_root, capsys):
    line = _error(capsys, _args(cifar_root, "--trainer.max_epoks", "2"))
    assert "unrecognized arguments: --trainer.max_epoks 2; did you mean --trainer.max_epochs?" in line
    assert "did you mean" not in _error(capsys, _args(cifar_root, "--no.such.option", "2"))


# --------------------------------------------------------------------------------------------
# hostile checkpoints: nothing in a file runs code or names a module that gets imported


@pytest.mark.parametrize("weights_only", ["true", "false"])
def test_a_torchscript_ckpt_path_is_refused_and_runs_nothing(
    weights_only, tmp_path, cifar_root, capsys, monkeypatch
):
    from tests.hostile_files import check_archive_runs_code, torchscript_archive

    monkeypatch.chdir(tmp_path)
    archive = torchscript_archive(tmp_path / "last.ckpt", tmp_path / "marker")
    check_archive_runs_code(archive, tmp_path / "marker")
    args = _args(cifar_root, "--ckpt_path", str(archive), "--weights_only", weights_only, version=None)
    assert "is a TorchScript archive" in _error(capsys, args)
    assert not (tmp_path / "marker").exists()


def test_a_torchscript_checkpoint_of_the_covariance_transfer_init_runs_nothing(
    tmp_path, cifar_root, capsys, monkeypatch
):
    from tests.hostile_files import check_archive_runs_code, torchscript_archive

    monkeypatch.chdir(tmp_path)
    archive = torchscript_archive(tmp_path / "trained.ckpt", tmp_path / "marker")
    check_archive_runs_code(archive, tmp_path / "marker")
    args = _args(
        cifar_root,
        "--config",
        str(REPO / "configs/init/covariance_transfer.yaml"),
        "--init.method.init_args.checkpoint",
        str(archive),
    )
    assert "is a TorchScript archive" in _error(capsys, args)
    assert not (tmp_path / "marker").exists()


def test_a_datamodule_named_by_a_checkpoint_is_never_imported(run_copy, capsys, monkeypatch):
    folder, _ = run_copy
    marker = folder / "imported"
    (folder / "planted_data_module.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Data: pass\n")
    monkeypatch.syspath_prepend(str(folder))
    checkpoint = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["datamodule_hyper_parameters"]["_class_path"] = "planted_data_module.Data"
    torch.save(checkpoint, folder / "planted.ckpt")
    args = ["fit", "--ckpt_path", str(folder / "planted.ckpt"), *TINY, "--trainer.max_epochs", "2"]
    line = _error(capsys, args)
    assert "names the DataModule 'planted_data_module.Data'" in line and "never imported" in line
    assert not marker.exists() and "planted_data_module" not in __import__("sys").modules


# ---------------------------------------------------------------- issue 19 item 3: a resume never relabels a run


def test_the_checkpoint_records_the_init_and_a_resume_under_another_init_is_an_error(run_copy, capsys):
    folder, cifar_root = run_copy
    ckpt = folder / "checkpoints" / "last.ckpt"
    record = torch.load(ckpt, weights_only=True)["callbacks"]["DepthwiseInit"]
    assert record == {"method": "none", "settings": {}, "name_filter": None, "seed": None, "freeze": False}
    line = _error(
        capsys,
        _args(
            cifar_root,
            "--config",
            str(REPO / "configs/init/dog.yaml"),
            "--trainer.max_epochs",
            "2",
            "--ckpt_path",
            str(ckpt),
            version=None,
        ),
    )
    assert "init.method dog (given) vs none (checkpoint)" in line
    line = _error(
        capsys, _args(cifar_root, "--init.seed", "7", "--trainer.max_epochs", "2", "--ckpt_path", "last")
    )
    assert "init.seed 7 (given) vs None (checkpoint)" in line
    # a trained run resumed with frozen depthwise weights would file it as a control (and vice versa)
    line = _error(
        capsys,
        _args(
            cifar_root,
            "--init.freeze",
            "true",
            "--trainer.max_epochs",
            "2",
            "--ckpt_path",
            str(ckpt),
            version=None,
        ),
    )
    assert "init.freeze True (given) vs False (checkpoint)" in line
    assert not Path("logs/quickstart/dog").exists() and not list(folder.glob("config.resume-*.yaml"))


@pytest.mark.slow
def test_a_dog_run_resumed_without_its_init_config_is_an_error(cifar_root, tmp_path, monkeypatch, capsys):
    """The reviewer's case: a DoG run resumed with its checkpoint but without configs/init/dog.yaml
    trained on into quickstart/none/version_0, filed by report as a `none` run."""
    monkeypatch.chdir(tmp_path)
    dog = ["--config", str(REPO / "configs/init/dog.yaml")]
    steps = cli.main(_args(cifar_root, *dog, "--trainer.max_epochs", "1", version=None)).trainer.global_step
    ckpt = tmp_path / "logs/quickstart/dog/version_0/checkpoints/last.ckpt"
    assert torch.load(ckpt, weights_only=True)["callbacks"]["DepthwiseInit"]["method"] == "dog"
    line = _error(
        capsys, _args(cifar_root, "--trainer.max_epochs", "2", "--ckpt_path", str(ckpt), version=None)
    )
    assert "init.method none (given) vs dog (checkpoint)" in line
    line = _error(
        capsys,
        _args(
            cifar_root,
            *dog,
            "--init.method.scale",
            "match",
            "--trainer.max_epochs",
            "2",
            "--ckpt_path",
            str(ckpt),
            version=None,
        ),
    )
    assert "init.method.scale 'match' (given) vs" in line
    assert not (tmp_path / "logs/quickstart/none").exists()
    resumed = cli.main(
        _args(cifar_root, *dog, "--trainer.max_epochs", "2", "--ckpt_path", str(ckpt), version=None)
    )
    assert (
        resumed.trainer.global_step == 2 * steps
        and Path(resumed.trainer.log_dir).resolve() == ckpt.parents[1].resolve()
    )


def test_a_resume_under_another_run_name_continues_in_the_checkpoints_folder(run_copy):
    """README's "Running experiments" form with a run that had its own name: the run folder is the
    checkpoint's, not a new <recipe name>/<init>/version_N."""
    folder, cifar_root = run_copy
    ckpt = folder / "checkpoints" / "last.ckpt"
    resumed = cli.main(
        _args(
            cifar_root,
            "--trainer.logger.init_args.name",
            "ctrlc",
            "--trainer.max_epochs",
            "2",
            "--ckpt_path",
            str(ckpt),
            version=None,
        )
    )
    assert resumed.trainer.global_step == 4 and Path(resumed.trainer.log_dir).resolve() == folder.resolve()
    assert (folder / "config.resume-1.yaml").is_file() and not Path("logs/ctrlc").exists()


def test_a_resume_into_another_fixed_version_is_refused(run_copy, capsys):
    folder, cifar_root = run_copy
    line = _error(
        capsys,
        _args(
            cifar_root,
            "--trainer.max_epochs",
            "2",
            "--ckpt_path",
            str(folder / "checkpoints" / "last.ckpt"),
            version="elsewhere",
        ),
    )
    assert "belongs to run folder" in line and "Drop --trainer.logger.init_args.version" in line
    assert not Path("logs/quickstart/none/elsewhere").exists()


def test_with_the_logger_off_a_fit_never_overwrites_a_checkpoint(cifar_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    off = ["--trainer.logger", "false", "--seed_everything", "3"]
    steps = cli.main(_args(cifar_root, *off, "--trainer.max_epochs", "1", version=None)).trainer.global_step
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    line = _error(capsys, _args(cifar_root, *off, "--trainer.max_epochs", "1", version=None))
    assert (
        f"{str(last)!r} already exists" in line
        and f"--ckpt_path {last}" in line
        and "--trainer.default_root_dir" in line
    )
    assert last.read_bytes() == before
    resumed = cli.main(
        _args(cifar_root, *off, "--trainer.max_epochs", "2", "--ckpt_path", str(last), version=None)
    )
    assert resumed.trainer.global_step == 2 * steps


# ---------------------------------------------------------------- issue 19 item 5: YAML read within bounds


def test_a_yaml_alias_bomb_or_deep_nesting_is_one_error_line(cifar_root, tmp_path, capsys):
    from tests.neural_echos.test_safe_yaml import alias_bomb

    (tmp_path / "bomb.yaml").write_text(alias_bomb())
    (tmp_path / "deep.yaml").write_text("model:\n  model_kwargs: " + "[" * 5000 + "]" * 5000 + "\n")
    line = _error(capsys, _args(cifar_root, "--config", str(tmp_path / "bomb.yaml")))
    assert f"config file {str(tmp_path / 'bomb.yaml')!r} is refused: its aliases expand" in line
    assert "nests deeper than 64 levels" in _error(
        capsys, _args(cifar_root, "--config", str(tmp_path / "deep.yaml"))
    )
    inline = "{" + alias_bomb().strip().replace("\n", ", ") + "}"
    assert "aliases expand" in _error(capsys, _args(cifar_root, "--model.model_kwargs", inline))


# ---------------------------------------------------------------- issue 21 item 3: frozen depthwise controls


def test_a_frozen_master_key_run_starts_from_its_config_and_resumes_frozen(cifar_root, tmp_path, monkeypatch):
    """run.py fit with configs/init/master_key.yaml and --init.freeze true: its own run folder
    (quickstart/master_key+frozen), and a resume from last.ckpt keeps the weights as initialised."""
    from neural_echos.depthwise import find_depthwise_convs

    monkeypatch.chdir(tmp_path)
    frozen = ["--config", str(REPO / "configs/init/master_key.yaml"), "--init.freeze", "true"]
    first = cli.main(_args(cifar_root, *frozen, "--trainer.max_epochs", "1"))
    folder = tmp_path / "logs/quickstart/master_key+frozen/r"
    assert Path(first.trainer.log_dir).resolve() == folder.resolve()
    ckpt = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["callbacks"]["DepthwiseInit"]["freeze"] is True
    initialised = {n: c.weight.detach().clone() for n, c in find_depthwise_convs(first.model.model)}
    assert yaml.safe_load((folder / "hparams.yaml").read_text())["init/freeze"] is True
    resumed = cli.main(_args(cifar_root, *frozen, "--trainer.max_epochs", "2", "--ckpt_path", "last"))
    assert resumed.trainer.global_step == 2 * first.trainer.global_step > 0  # it went on training
    for name, conv in find_depthwise_convs(resumed.model.model):
        assert not conv.weight.requires_grad and torch.equal(conv.weight.detach(), initialised[name]), name
    # still marked frozen after the resume rewrote hparams.yaml
    assert yaml.safe_load((folder / "hparams.yaml").read_text())["init/freeze"] is True


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--init.freeze", "maybe"], "Parser key \"init.freeze\": Expected a <class 'bool'>"),
        (
            ["--config", str(REPO / "configs/init/master_key.yaml"), "--init.method.filters", "[9]"],
            "filters must be a non-empty list of master key filter numbers 1-8; got [9]",
        ),
        (
            ["--config", str(REPO / "configs/init/impulse.yaml"), "--init.method.noise", "-1"],
            "noise is the random part's size relative to the impulse and must be a number >= 0",
        ),
    ],
)
def test_bad_control_settings_are_one_line_errors(cifar_root, tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.chdir(tmp_path)
    assert message in _error(capsys, _args(cifar_root, *extra, "--trainer.max_epochs", "1"))


@pytest.mark.parametrize(
    ("args", "suggestion"),
    [
        (
            ["fit", "--config", str(REPO / "configs/cifar10/quickstart.yaml"), "--trainer.max_epoch", "2"],
            "unrecognized arguments: --trainer.max_epoch 2; did you mean --trainer.max_epochs?",
        ),
        (
            ["fit", "--config", str(REPO / "configs/cifar10/quickstart.yaml"), "--trainer.max_epoch=2"],
            "did you mean --trainer.max_epochs?",
        ),
        (["analyze", "--model", "convnext_tiny", "--thresh", "0.6"], "did you mean --threshold?"),
        (["report", "logs", "--ou", "x"], "did you mean --out?"),
    ],
    ids=["fit", "fit-equals", "analyze", "report"],
)
def test_an_abbreviated_option_is_an_error_with_a_did_you_mean(capsys, args, suggestion):
    # argparse's prefix matching used to take --trainer.max_epoch silently as --trainer.max_epochs
    assert suggestion in _error(capsys, args)


def test_checkpoint_names_count_epochs_from_one_and_keep_modelcheckpoints_state_key(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from neural_echos.cli.app import BestCheckpoint

    settings = {
        "dirpath": tmp_path,
        "monitor": "val/acc1",
        "mode": "max",
        "auto_insert_metric_name": False,
        "filename": "best-epoch{epoch:03d}-acc{val/acc1:.4f}",
    }
    ours, lightnings = BestCheckpoint(**settings), ModelCheckpoint(**settings)
    metrics = {"epoch": torch.tensor(0), "val/acc1": torch.tensor(0.25)}
    assert (
        Path(ours.format_checkpoint_name(metrics)).name == "best-epoch001-acc0.2500.ckpt"
    )  # the first epoch
    assert Path(lightnings.format_checkpoint_name(metrics)).name == "best-epoch000-acc0.2500.ckpt"
    assert ours.state_key == lightnings.state_key  # runs saved before resume with their best score
