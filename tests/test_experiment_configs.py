"""The experiment configs (configs/experiments/**) and the sweep launcher (scripts/sweep.sh).

* every YAML parses and its header comment holds a command whose configs exist;
* that command, run with ``--print_config``, parses with run.py and yields the file's settings
  (one subprocess runs all of them in turn, to pay for the imports once);
* the controls (configs/experiments/controls/: trained vs frozen depthwise weights for four inits,
  each one --config over an experiment and an init config) come in complete twin pairs;
* the CIFAR-10 experiments, the CIFAR-10 controls and the ablations train one step
  (``--trainer.fast_dev_run``) on a synthetic CIFAR-10 tree; the ImageNet ones are only parsed
  (no ImageNet here);
* ``scripts/sweep.sh --dry-run`` prints the documented commands, and a real two-run sweep
  feeds ``run.py report``.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from neural_echos.init import method_name

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "configs" / "experiments"
SWEEP = REPO / "scripts" / "sweep.sh"
IMAGENET_DATA = REPO / "configs" / "data" / "imagenet.yaml"
ALL_YAML = sorted(EXPERIMENTS.rglob("*.yaml"))
MODEL_FILES = [p for p in ALL_YAML if p.parent.name in ("imagenet", "cifar10")]
ABLATIONS = sorted((EXPERIMENTS / "ablations").glob("*.yaml"))
CIFAR_FILES = sorted((EXPERIMENTS / "cifar10").glob("*.yaml"))
CONTROLS = sorted((EXPERIMENTS / "controls").glob("*.yaml"))
CONTROL_INITS = ("dog", "kaiming_normal", "impulse", "master_key")
CONTROL_BASES = {"cifar10": "cifar10/convnext_atto_k7.yaml", "imagenet": "imagenet/convnext_tiny_k7.yaml"}


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def header_command(path: Path) -> list[str]:
    """The first ``python run.py fit ...`` command of the header comment, as run.py arguments."""
    lines, command = path.read_text(encoding="utf-8").splitlines(), None
    for line in lines:
        if not line.startswith("#"):
            break
        text = line[1:].strip()
        if command is None and text.startswith("python run.py fit"):
            command = text
        elif command is not None and command.endswith("\\"):
            command = command[:-1] + " " + text
    assert command is not None, f"{rel(path)}: no `python run.py fit ...` command in the header comment"
    words = shlex.split(command)
    assert words[:3] == ["python", "run.py", "fit"]
    return words[2:]


def documented_args(path: Path) -> list[str]:
    """The header command, ready to run here: without configs/data/imagenet.yaml while that file
    is absent (the experiment names the DataModule's class_path itself), with a placeholder root."""
    args = header_command(path)
    if not IMAGENET_DATA.exists() and rel(IMAGENET_DATA) in args:
        index = args.index(rel(IMAGENET_DATA))
        del args[index - 1 : index + 1]
    args = [arg if arg != "/path/to/imagenet" else "/nonexistent/imagenet" for arg in args]
    # absolute config paths: the commands run from a scratch directory, so that nothing lands in the repo
    return [
        str(REPO / arg) if index and args[index - 1] == "--config" else arg for index, arg in enumerate(args)
    ]


def run_in_process(commands: list[list[str]], tmp_path: Path, timeout: int = 900) -> list[dict]:
    """Run ``run.main(args)`` for each command in one fresh interpreter (imports paid once)."""
    script = r"""
import contextlib, io, json, sys, traceback
sys.path.insert(0, sys.argv[1])
import run
results = []
for args in json.load(open(sys.argv[2])):
    out, err, code, trace = io.StringIO(), io.StringIO(), 0, ""
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run.main(args)
    except SystemExit as exit_:
        code = exit_.code
    except BaseException:
        code, trace = 1, traceback.format_exc()
    results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()[-4000:] + trace})
json.dump(results, open(sys.argv[3], "w"))
"""
    commands_file, results_file = tmp_path / "commands.json", tmp_path / "results.json"
    commands_file.write_text(json.dumps(commands), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(REPO), str(commands_file), str(results_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0 and results_file.exists(), done.stderr[-4000:]
    return json.loads(results_file.read_text(encoding="utf-8"))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def merged(old: dict, new: dict) -> dict:
    out = dict(old)
    for key, value in new.items():
        out[key] = (
            merged(old[key], value) if isinstance(value, dict) and isinstance(old.get(key), dict) else value
        )
    return out


def composed(path: Path, own: bool = True) -> dict:
    """A config file with its `base:` files (relative to it) applied first, key by key: what
    run.py's --config does (neural_echos/cli/config_files.py), written independently here.
    ``own=False``: the bases only."""
    data = load(path)
    bases = data.pop("base", [])
    out: dict = {}
    for base in [bases] if isinstance(bases, str) else bases:
        out = merged(out, composed(path.parent / base))
    return merged(out, data) if own else out


def base_recipe(path: Path) -> Path:
    """The first file of configs/<dataset>/ on the chain of (first) bases of an experiment."""
    while path.parent.parent != REPO / "configs":
        bases = load(path)["base"]
        path = (path.parent / (bases if isinstance(bases, str) else bases[0])).resolve()
    return path


def leaves(config: dict, prefix: str = "") -> dict:
    """Dotted key -> value for every non-dict value."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# --------------------------------------------------------------------------------------------
# the files (fast)


def test_the_experiments_are_there():
    names = {rel(p) for p in ALL_YAML}
    for expected in [
        "configs/experiments/imagenet/convnext_tiny_k7.yaml",
        "configs/experiments/imagenet/convnext_tiny_k9.yaml",
        "configs/experiments/imagenet/convnext_tiny_k11.yaml",
        "configs/experiments/imagenet/hornet_tiny_7x7.yaml",
        "configs/experiments/imagenet/convmixer_768_32.yaml",
        "configs/experiments/cifar10/convnext_atto_k7.yaml",
        "configs/experiments/cifar10/convnext_atto_k9.yaml",
        "configs/experiments/cifar10/convnext_atto_k11.yaml",
        "configs/experiments/cifar10/convmixer_256_8.yaml",
        "configs/experiments/cifar10/hornet_tiny_7x7.yaml",
        "configs/experiments/ablations/dog_gamma_0_0.5.yaml",
        "configs/experiments/ablations/dog_on_only.yaml",
        "configs/experiments/ablations/dog_off_only.yaml",
        "configs/experiments/ablations/dog_share_0.5.yaml",
        "configs/experiments/ablations/dog_scale_kaiming.yaml",
        "configs/experiments/ablations/dog_scale_match.yaml",
    ]:
        assert expected in names


@pytest.mark.parametrize("path", ALL_YAML, ids=rel)
def test_yaml_and_header(path):
    config = composed(path)
    if path.parent.name == "ablations":
        assert set(config) == {"init"}
        assert config["init"]["method"]["class_path"] == "DoGInit"
    elif path.parent.name == "controls":  # <dataset>_<init>[_frozen].yaml: an experiment plus an init config
        dataset, _, rest = path.stem.partition("_")
        init = rest.removesuffix("_frozen")
        assert set(config) == {"trainer", "data", "model", "init"} and init in CONTROL_INITS
        assert load(path)["base"] == [f"../{CONTROL_BASES[dataset]}", f"../../init/{init}.yaml"]
        assert method_name(config["init"]["method"]["class_path"]) == init
        assert config["init"].get("freeze", False) is path.stem.endswith("_frozen")
        label = init + ("+frozen" if path.stem.endswith("_frozen") else "")
        assert f'Report label "{label}"' in path.read_text()
    else:
        assert set(config) == {"trainer", "data", "model"}
        name = f"{path.parent.name}_{path.stem}"
        assert config["trainer"]["logger"]["init_args"]["name"] == name  # = the sweep's experiment name
        kwargs = config["model"].get("model_kwargs") or {}
        match = re.search(r"_k(\d+)$", path.stem)
        if match:
            assert kwargs["kernel_sizes"] == int(match.group(1))
        if path.parent.name == "imagenet":
            assert config["trainer"]["max_epochs"] == 50 and config["trainer"]["precision"] == "bf16-mixed"
            assert config["data"]["class_path"] == "datamodules.imagenet.ImageNetDataModule"
    for index, word in enumerate(args := header_command(path)):
        if word == "--config":
            target = args[index + 1]
            assert (REPO / target).exists() or target == rel(IMAGENET_DATA), f"{rel(path)}: {target} missing"
    assert rel(path) in args
    assert "scripts/sweep.sh " in path.read_text(encoding="utf-8")


def test_the_controls_come_in_trained_and_frozen_twins():
    """issue 21: trained vs frozen for DoG, Kaiming, impulse and master-key, on CIFAR-10 and ImageNet;
    a frozen file is its trained twin plus `init.freeze: true` and nothing else."""
    assert {p.stem for p in CONTROLS} == {
        f"{dataset}_{init}{suffix}"
        for dataset in CONTROL_BASES
        for init in CONTROL_INITS
        for suffix in ("", "_frozen")
    }
    for path in CONTROLS:
        if path.stem.endswith("_frozen"):
            twin = load(path.with_name(path.stem.removesuffix("_frozen") + ".yaml"))
            assert load(path) == {**twin, "init": {"freeze": True}}, rel(path)


BASED = sorted(p for p in (REPO / "configs").rglob("*.yaml") if "base" in load(p))


@pytest.mark.parametrize("path", BASED, ids=rel)
def test_configs_with_a_base_hold_only_what_differs(path):
    """An experiment (or recipe) with a `base:` sets no value its bases already give it."""
    own = {key: value for key, value in load(path).items() if key != "base"}
    inherited = leaves(composed(path, own=False))
    repeated = {
        key: value for key, value in leaves(own).items() if key in inherited and inherited[key] == value
    }
    assert not repeated, f"{rel(path)} repeats its base: {repeated}"


def test_experiments_are_deltas_of_one_base_recipe_per_dataset_and_family():
    bases = {p for p in ALL_YAML if p.parent.name in ("cifar10", "imagenet")}
    for path in bases:
        assert "base" in load(path), f"{rel(path)} is a full copy, not a delta of a base recipe"
    # the base recipes: configs/<dataset>/<family>.yaml
    roots = {base_recipe(path) for path in bases}
    assert {rel(p) for p in roots} == {
        "configs/cifar10/convnext_atto.yaml",
        "configs/cifar10/convmixer_256_8.yaml",
        "configs/imagenet/convnext_tiny.yaml",
        "configs/imagenet/convmixer_768_32.yaml",
    }
    # the k7/k9/k11 files differ in the kernel size and the run name only
    for family in ("cifar10/convnext_atto", "imagenet/convnext_tiny"):
        for k in (9, 11):
            own = load(EXPERIMENTS / f"{family}_k{k}.yaml")
            assert leaves(own) == {
                "base": f"{Path(family).name}_k7.yaml",
                "model.model_kwargs.kernel_sizes": k,
                "trainer.logger.init_args.name": f"{family.replace('/', '_')}_k{k}",
            }


def test_the_logger_block_is_in_one_place():
    """The TensorBoard logger's class and settings live in cli.TRAINER_DEFAULTS; configs name runs only."""
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        logger = ((load(path) or {}).get("trainer") or {}).get("logger")
        if logger is not None:
            assert leaves(logger).keys() == {"init_args.name"}, rel(path)


def test_ablations_differ_from_dog_in_one_setting():
    from neural_echos.init.dog import DoGInit

    defaults = {name: p.default for name, p in inspect.signature(DoGInit).parameters.items()}
    dog = load(REPO / "configs" / "init" / "dog.yaml")["init"]["method"]["init_args"]
    # configs/init/dog.yaml states the paper's settings, which are DoGInit's defaults
    assert {key: tuple(v) if isinstance(v, list) else v for key, v in dog.items()} == {
        key: value for key, value in defaults.items() if key in dog
    }
    for path in ABLATIONS:
        init_args = load(path)["init"]["method"]["init_args"]
        ((key, value),) = init_args.items()
        assert (tuple(value) if isinstance(value, list) else value) != defaults[key], rel(path)


# --------------------------------------------------------------------------------------------
# parsed by run.py (slow: one interpreter for all)


TRAP = REPO / "tests" / "data" / "model_kwargs_k9.yaml"  # model_kwargs: {kernel_sizes: 9}, nothing else
PRINT_CASES = (
    [(path, None) for path in MODEL_FILES]
    + [
        (path, REPO / "configs" / "init" / "kaiming_normal.yaml")
        for path in MODEL_FILES
        if path.parent.name == "imagenet"
    ]
    + [(path, None) for path in ABLATIONS]
    + [(path, None) for path in CONTROLS]
)


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    commands = []
    for path, init in PRINT_CASES:
        args = documented_args(path)
        if init is not None:  # the other init in place of the documented one
            args[args.index(str(REPO / "configs/init/dog.yaml"))] = str(init)
        commands.append([*args, "--print_config"])
    # the trap of plain dicts: a later file's model_kwargs must merge into the earlier file's
    commands.append(
        [
            "fit",
            "--config",
            str(REPO / "configs/cifar10/quickstart.yaml"),
            "--config",
            str(TRAP),
            "--print_config",
        ]
    )
    results = run_in_process(commands, tmp_path_factory.mktemp("print_config"))
    return {
        **{(path, init): result for (path, init), result in zip(PRINT_CASES, results)},
        "trap": results[-1],
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "init"), PRINT_CASES, ids=[rel(p) + ("+kaiming_normal" if i else "") for p, i in PRINT_CASES]
)
def test_print_config(printed, path, init):
    result = printed[(path, init)]
    assert result["code"] == 0, result["stderr"]
    full = yaml.safe_load(result["stdout"])
    own = composed(path)  # the file with its bases, composed here independently of run.py
    if "model" in own:  # the experiment's settings win over the data config given before it
        for key, value in leaves(own).items():
            if not key.startswith("init."):  # (the init's class_path prints in full: compared below)
                assert leaves(full)[key] == value, key
        default = composed(REPO / "configs" / "init" / "dog.yaml")["init"]
        expected_init = composed(init)["init"] if init is not None else own.get("init", default)
    else:
        expected_init = own["init"]
    method = full["init"]["method"]
    assert method_name(method["class_path"]) == method_name(expected_init["method"]["class_path"])
    for key, value in (expected_init["method"].get("init_args") or {}).items():
        assert method["init_args"][key] == value, key
    assert full["init"]["freeze"] is expected_init.get("freeze", False)


@pytest.mark.slow
def test_model_kwargs_merge_across_config_files(printed):
    """--config quickstart.yaml --config k9.yaml with `model_kwargs: {kernel_sizes: 9}` keeps the
    quickstart's drop_path_rate, as --model.model_kwargs.kernel_sizes 9 would."""
    assert load(TRAP) == {"model": {"model_kwargs": {"kernel_sizes": 9}}}
    result = printed["trap"]
    assert result["code"] == 0, result["stderr"]
    assert yaml.safe_load(result["stdout"])["model"]["model_kwargs"] == {
        "drop_path_rate": 0.1,
        "kernel_sizes": 9,
    }


# --------------------------------------------------------------------------------------------
# one training step on a synthetic CIFAR-10 tree (slow)


FAST_DEV_CASES = CIFAR_FILES + ABLATIONS + [path for path in CONTROLS if path.stem.startswith("cifar10_")]
# every init config, on the cheapest recipe (the quickstart's ConvNeXt-atto with its 4x4 stem; what
# each logs is tested in tests/callbacks/test_depthwise_init.py: fast_dev_run turns the logger off)
INIT_CONFIGS = sorted((REPO / "configs" / "init").glob("*.yaml"))


@pytest.fixture(scope="module")
def fast_dev_runs(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("_experiments_conftest", REPO / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    root = conftest.write_cifar10_tree(tmp_path_factory.mktemp("cifar") / "cifar10", images_per_batch=16)
    quick = [
        "--data.root",
        str(root),
        "--data.download",
        "false",
        "--data.batch_size",
        "8",
        "--trainer.fast_dev_run",
        "true",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
    ]
    commands = [[*documented_args(path), *quick] for path in FAST_DEV_CASES]
    # a "trained" checkpoint for covariance_transfer: 5x5 kernels, so the atto's 7x7 take a resized Sigma
    checkpoint = tmp_path_factory.mktemp("ckpt") / "trained.pt"
    generator = torch.Generator().manual_seed(0)
    torch.save(
        {f"blocks.{i}.conv_dw.weight": torch.randn(64, 1, 5, 5, generator=generator) for i in range(4)},
        checkpoint,
    )
    for path in INIT_CONFIGS:
        extra = (
            ["--init.method.init_args.checkpoint", str(checkpoint)]
            if path.stem == "covariance_transfer"
            else []
        )
        commands.append(
            [
                "fit",
                "--config",
                str(REPO / "configs/cifar10/quickstart.yaml"),
                "--config",
                str(path),
                *extra,
                *quick,
                "--snapshot.every_n_epochs",
                "0",
            ]
        )  # (no kernel snapshots: half the time)
    results = run_in_process(commands, tmp_path_factory.mktemp("fast_dev_run"))
    return dict(zip(FAST_DEV_CASES + INIT_CONFIGS, results))


@pytest.mark.slow
@pytest.mark.parametrize("path", FAST_DEV_CASES + INIT_CONFIGS, ids=rel)
def test_fast_dev_run(fast_dev_runs, path):
    result = fast_dev_runs[path]
    assert result["code"] == 0, result["stderr"]


# --------------------------------------------------------------------------------------------
# scripts/sweep.sh


def sweep(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SWEEP), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_sweep_dry_run_commands(tmp_path):
    done = sweep(
        "--dry-run",
        "configs/experiments/cifar10/convnext_atto_k7.yaml",
        "--inits",
        "kaiming_normal dog dog_on_only",
        "--seeds",
        "0 1",
        "--tag",
        "T1",
        "--",
        "--trainer.max_epochs",
        "1",
        "--data.root",
        "/a b/it's",
    )
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.strip().splitlines()
    assert header == f"# cifar10_convnext_atto_k7: 6 runs, from {REPO}"
    assert len(lines) == 6
    expected_inits = (
        ["configs/init/kaiming_normal.yaml"] * 2
        + ["configs/init/dog.yaml"] * 2
        + ["configs/experiments/ablations/dog_on_only.yaml"] * 2
    )
    # configs/init/ names give the experiment's name (run.py appends /<init method>); an ablation its own
    names = ["cifar10_convnext_atto_k7"] * 4 + ["cifar10_convnext_atto_k7_dog_on_only"] * 2
    for line, init, name, seed in zip(lines, expected_inits, names, ["0", "1"] * 3):
        assert shlex.split(line) == [
            ".venv/bin/python" if (REPO / ".venv/bin/python").exists() else "python3",
            "run.py",
            "fit",
            "--config",
            "configs/data/cifar10.yaml",
            "--config",
            "configs/experiments/cifar10/convnext_atto_k7.yaml",
            "--config",
            init,
            "--seed_everything",
            seed,
            "--trainer.logger.init_args.name",
            name,
            "--trainer.logger.init_args.version",
            f"seed{seed}-T1",
            "--trainer.max_epochs",
            "1",
            "--data.root",
            "/a b/it's",
        ]
    # called from elsewhere with a path relative to the repo: the same commands
    elsewhere = sweep(
        "--dry-run",
        "configs/experiments/cifar10/convnext_atto_k7.yaml",
        "--inits",
        "kaiming_normal dog dog_on_only",
        "--seeds",
        "0 1",
        "--tag",
        "T1",
        "--",
        "--trainer.max_epochs",
        "1",
        "--data.root",
        "/a b/it's",
        cwd=tmp_path,
    )
    assert elsewhere.stdout == done.stdout


def test_sweep_dry_run_options():
    done = sweep(
        "--dry-run",
        "--data",
        "configs/data/cifar10_mini.yaml",
        "--save-dir",
        "/tmp/sweeplogs",
        "--resume",
        "--tag",
        "X",
        "--seeds",
        "3",
        "--inits",
        "configs/experiments/ablations/dog_scale_match.yaml",
        "configs/experiments/cifar10/convmixer_256_8.yaml",
        env={"PYTHON": "python"},
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.strip().splitlines()[1:]
    words = shlex.split(line)
    assert words[:5] == ["python", "run.py", "fit", "--config", "configs/data/cifar10_mini.yaml"]
    assert "configs/experiments/ablations/dog_scale_match.yaml" in words
    assert (
        words[words.index("--trainer.logger.init_args.name") + 1] == "cifar10_convmixer_256_8_dog_scale_match"
    )
    assert words[words.index("--trainer.logger.init_args.save_dir") + 1] == "/tmp/sweeplogs"
    assert words[-2:] == ["--ckpt_path", "last-if-any"]  # resume where there is a checkpoint, else start
    # the default inits, and --name for a variant set after `--` (another kernel size)
    done = sweep(
        "--dry-run",
        "configs/experiments/cifar10/convnext_atto_k7.yaml",
        "--seeds",
        "0",
        "--tag",
        "X",
        "--name",
        "cifar10_convnext_atto_k5",
        "--",
        "--model.model_kwargs.kernel_sizes",
        "5",
    )
    assert done.returncode == 0, done.stderr
    runs = [shlex.split(line) for line in done.stdout.strip().splitlines()[1:]]
    assert [words[words.index("--trainer.logger.init_args.name") + 1] for words in runs] == [
        "cifar10_convnext_atto_k5",
        "cifar10_convnext_atto_k5",
    ]  # run.py appends /<init method>
    assert all(words[-2:] == ["--model.model_kwargs.kernel_sizes", "5"] for words in runs)
    # `--data none`: the experiment alone (it names its DataModule class itself)
    done = sweep(
        "--dry-run",
        "configs/experiments/imagenet/convnext_tiny_k9.yaml",
        "--seeds",
        "0",
        "--inits",
        "dog",
        "--data",
        "none",
        "--tag",
        "X",
    )
    (line,) = done.stdout.strip().splitlines()[1:]
    assert shlex.split(line)[3:7] == [
        "--config",
        "configs/experiments/imagenet/convnext_tiny_k9.yaml",
        "--config",
        "configs/init/dog.yaml",
    ]


def test_sweep_dry_run_slurm():
    env = {"SBATCH_ARGS": "--partition=gpu --gres=gpu:8", "PYTHON": "python"}
    done = sweep(
        "--slurm",
        "--dry-run",
        "configs/experiments/imagenet/convmixer_768_32.yaml",
        "--seeds",
        "0 1",
        "--tag",
        "X",
        "--data",
        "none",
        "--",
        "--data.init_args.root",
        "/data/image net",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()[1:]
    assert len(lines) == 4
    words = shlex.split(lines[0])
    assert words[:5] == [
        "sbatch",
        "--partition=gpu",
        "--gres=gpu:8",
        "--job-name=ne-imagenet_convmixer_768_32-kaiming_normal-s0",
        "--output=logs/slurm/%x-%j.out",
    ]
    assert words[5] == "--wrap"
    wrapped = shlex.split(words[6])
    assert wrapped[:5] == ["cd", str(REPO), "&&", "srun", "python"]
    assert wrapped[5:7] == ["run.py", "fit"] and wrapped[-2:] == ["--data.init_args.root", "/data/image net"]
    # a batch script of the cluster's, given run.py's arguments
    done = sweep(
        "--slurm",
        "--dry-run",
        "configs/experiments/imagenet/convmixer_768_32.yaml",
        "--seeds",
        "0",
        "--inits",
        "dog",
        "--tag",
        "X",
        "--data",
        "none",
        env={"SBATCH_SCRIPT": "scripts/train.sbatch", "SBATCH_ARGS": ""},
    )
    (line,) = done.stdout.strip().splitlines()[1:]
    assert shlex.split(line)[:4] == [
        "sbatch",
        "--job-name=ne-imagenet_convmixer_768_32-dog-s0",
        "scripts/train.sbatch",
        "fit",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no experiment config given"),
        (("nope.yaml",), "experiment config nope.yaml not found"),
        (("configs/experiments/cifar10/convmixer_256_8.yaml", "--inits", "foo"), "unknown init 'foo'"),
        (("configs/experiments/cifar10/convmixer_256_8.yaml", "--seeds", "a"), "seed 'a' is not"),
        (("configs/experiments/cifar10/convmixer_256_8.yaml", "--resume"), "--resume needs the --tag"),
        (("configs/experiments/cifar10/convmixer_256_8.yaml", "--bogus"), "unknown option --bogus"),
        (
            ("configs/experiments/cifar10/convmixer_256_8.yaml", "--data", "nope.yaml"),
            "data config nope.yaml not found",
        ),
        (("configs/experiments/cifar10/convmixer_256_8.yaml", "--name", "a/b"), "name 'a/b' may only hold"),
        (
            ("configs/experiments/cifar10/convmixer_256_8.yaml", "--inits", "kaiming"),
            "unknown init 'kaiming'",
        ),
    ],
)
def test_sweep_errors(args, message):
    done = sweep("--dry-run", *args)
    assert done.returncode == 2 and message in done.stderr and done.stdout == ""


def test_sweep_help():
    done = sweep("--help")
    assert done.returncode == 0 and "--inits" in done.stdout and "SBATCH_SCRIPT" in done.stdout


@pytest.mark.slow
def test_sweep_then_report(tmp_path, cifar_root):
    """Two real runs (kaiming, dog) of one seed, then `run.py report` groups them by init."""
    logs = tmp_path / "logs"
    done = subprocess.run(
        [
            "bash",
            str(SWEEP),
            "configs/experiments/cifar10/convmixer_256_8.yaml",
            "--seeds",
            "0",
            "--tag",
            "t",
            "--save-dir",
            str(logs),
            "--",
            "--data.root",
            str(cifar_root),
            "--data.download",
            "false",
            "--data.batch_size",
            "16",
            "--trainer.max_epochs",
            "1",
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
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.relative_to(logs).as_posix() for p in logs.glob("*/*/*")) == [
        "cifar10_convmixer_256_8/dog/seed0-t",
        "cifar10_convmixer_256_8/kaiming_normal/seed0-t",
    ]
    out = tmp_path / "report"
    report = subprocess.run(
        [sys.executable, "run.py", "report", str(logs), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr
    with open(out / "results.csv", encoding="utf-8") as f:
        rows = list(__import__("csv").DictReader(f))
    assert [(row["init"], row["n"], row["seeds"]) for row in rows] == [
        ("kaiming_normal", "1", "0"),
        ("dog", "1", "0"),
    ]
    assert rows[1]["delta_final"] != "n/a"
