#!/usr/bin/env bash
# Run one experiment config over depthwise inits and seeds, one run.py fit per (init, seed).
#
#   scripts/sweep.sh [options] EXPERIMENT_CONFIG [options] [-- extra run.py fit args]
#
#   scripts/sweep.sh configs/experiments/cifar10/convnext_atto_k7.yaml --inits "kaiming_normal dog" --seeds "0 1 2"
#   scripts/sweep.sh --slurm configs/experiments/imagenet/convnext_tiny_k7.yaml -- --data.init_args.root /data/imagenet
#   scripts/sweep.sh --dry-run configs/experiments/cifar10/convmixer_256_8.yaml --inits "kaiming_normal dog dog_on_only"
#   scripts/sweep.sh configs/experiments/cifar10/convnext_atto_k7.yaml --name cifar10_convnext_atto_k5 \
#     -- --model.model_kwargs.kernel_sizes 5
#
# Options (before or after the config; everything after `--` goes to every run.py fit unchanged):
#   --inits "A B ..."  inits to compare (default: "kaiming_normal dog"). Each is a name in configs/init/,
#                      i.e. an init method's registry name (dog, kaiming_normal, kaiming_uniform,
#                      torch_default, gaussian_covariance, covariance_transfer; none: the model's
#                      own init), a name in configs/experiments/ablations/ (dog_on_only,
#                      dog_gamma_0_0.5, ...), or a path to a YAML file with a top-level `init:` key.
#                      covariance_transfer needs its checkpoint after `--`:
#                      -- --init.method.init_args.checkpoint PATH
#   --seeds "0 1 2"    seeds, passed as --seed_everything (default: "0 1 2"). The init's own seed
#                      follows it (init.seed unset).
#   --data FILE|none   data config given before the experiment (default: configs/data/<dataset>.yaml
#                      for configs/experiments/<dataset>/..., when that file exists; `none`: no data
#                      config, e.g. when the experiment file is complete).
#   --name NAME        the experiment's name in the run directories (default: <dataset>_<file name>,
#                      see below). With another setting after `--`, e.g. another kernel size
#                      (`--name cifar10_convnext_atto_k5 -- --model.model_kwargs.kernel_sizes 5`).
#   --tag TAG          suffix of the run directories (default: the date and time the sweep starts).
#   --resume           continue the runs of an earlier sweep: give its --tag; adds --ckpt_path
#                      last-if-any: runs with a last.ckpt resume from it (finished ones stop at
#                      once), runs that never started start from scratch, and a run folder that
#                      holds a run without a checkpoint (it stopped before its first epoch ended)
#                      is refused with what to do (run.py never trains into another run's folder).
#   --save-dir DIR     TensorBoard save_dir (default: the experiment's, i.e. logs/ in the repo).
#   --dry-run          print the commands (one per line, shell-quoted) instead of running them.
#   --slurm            submit one SLURM job per (init, seed) with sbatch instead of running here:
#                      with SBATCH_SCRIPT=path set, `sbatch [SBATCH_ARGS] --job-name=... $SBATCH_SCRIPT
#                      fit --config ...` (the script gets run.py's arguments: it should cd to the repo
#                      and run `srun python run.py "$@"`); otherwise an inline job,
#                      `sbatch [SBATCH_ARGS] --job-name=... --output=logs/slurm/%x-%j.out --wrap
#                      "cd REPO && srun PYTHON run.py fit ..."`. SBATCH_ARGS (split on spaces) carries
#                      the cluster's options, e.g. "--partition=gpu --nodes=1 --ntasks-per-node=8
#                      --gres=gpu:8 --cpus-per-task=10 --time=72:00:00" for the 8-GPU ImageNet
#                      recipes (Lightning under SLURM needs one task per GPU). SRUN="" drops srun.
#   -h, --help         this text.
# Environment: PYTHON (default: .venv/bin/python in the repo when present, else python3).
#
# Every run gets its own TensorBoard directory, <save_dir>/<experiment>/<init method>/seed<S>-<tag>/
# (logger name and version set explicitly, so parallel SLURM jobs never pick the same version;
# run.py adds the init method's registry name to the logger name), where <experiment> is
# <dataset>_<file name> (or --name), e.g. logs/cifar10_convnext_atto_k7/dog/seed0-20250101-120000/.
# An ablation or init file outside configs/init/ gets <experiment>_<file name>, e.g.
# logs/cifar10_convnext_atto_k7_dog_on_only/dog/seed0-.../.
# Runs are independent: a failed run does not stop the others (the exit status is 1 if any
# failed). Then compare them with:
#   python run.py report logs/<experiment>* --out report_out/<experiment>
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

die() {
    echo "sweep.sh: error: $*" >&2
    echo "run scripts/sweep.sh --help for the usage" >&2
    exit 2
}

inits="kaiming_normal dog"
seeds="0 1 2"
data=""
tag=""
resume=0
save_dir=""
dry_run=0
slurm=0
experiment=""
name=""
extra=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --inits) [[ $# -ge 2 ]] || die "--inits needs a value"; inits="$2"; shift 2 ;;
        --inits=*) inits="${1#*=}"; shift ;;
        --seeds) [[ $# -ge 2 ]] || die "--seeds needs a value"; seeds="$2"; shift 2 ;;
        --seeds=*) seeds="${1#*=}"; shift ;;
        --data) [[ $# -ge 2 ]] || die "--data needs a value"; data="$2"; shift 2 ;;
        --data=*) data="${1#*=}"; shift ;;
        --name) [[ $# -ge 2 ]] || die "--name needs a value"; name="$2"; shift 2 ;;
        --name=*) name="${1#*=}"; shift ;;
        --tag) [[ $# -ge 2 ]] || die "--tag needs a value"; tag="$2"; shift 2 ;;
        --tag=*) tag="${1#*=}"; shift ;;
        --save-dir) [[ $# -ge 2 ]] || die "--save-dir needs a value"; save_dir="$2"; shift 2 ;;
        --save-dir=*) save_dir="${1#*=}"; shift ;;
        --resume) resume=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        --slurm) slurm=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        -*) die "unknown option $1 (arguments for run.py go after --)" ;;
        *) [[ -z "$experiment" ]] || die "one experiment config at a time (got $experiment and $1)"
           experiment="$1"; shift ;;
    esac
done

[[ -n "$experiment" ]] || die "no experiment config given, e.g. scripts/sweep.sh configs/experiments/cifar10/convnext_atto_k7.yaml"

# A path as given (relative to the current directory) or relative to the repo; printed relative
# to the repo when inside it, since every command runs from the repo root.
resolve() {
    local path="$1" abs
    if [[ -f "$path" ]]; then
        abs="$(cd "$(dirname "$path")" && pwd)/$(basename "$path")"
    elif [[ -f "$REPO/$path" ]]; then
        abs="$REPO/$path"
    else
        return 1
    fi
    if [[ "$abs" == "$REPO/"* ]]; then echo "${abs#"$REPO/"}"; else echo "$abs"; fi
}

experiment_path="$(resolve "$experiment")" || die "experiment config $experiment not found"
exp_file="$(basename "$experiment_path")"
exp_file="${exp_file%.yaml}"
exp_file="${exp_file%.yml}"
exp_dir="$(basename "$(dirname "$experiment_path")")"
if [[ "$exp_dir" == "experiments" || "$exp_dir" == "configs" || "$exp_dir" == "." ]]; then
    exp_name="$exp_file"
else
    exp_name="${exp_dir}_${exp_file}"
fi
if [[ -n "$name" ]]; then
    [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "name '$name' may only hold letters, digits, '.', '_' and '-'"
    exp_name="$name"
fi

if [[ -z "$data" ]]; then
    if [[ -f "$REPO/configs/data/$exp_dir.yaml" ]]; then
        data="configs/data/$exp_dir.yaml"
    fi
elif [[ "$data" == "none" ]]; then
    data=""
else
    given="$data"
    data="$(resolve "$given")" || die "data config $given not found"
fi

read -r -a init_list <<< "$inits"
read -r -a seed_list <<< "$seeds"
[[ ${#init_list[@]} -gt 0 ]] || die "--inits is empty"
[[ ${#seed_list[@]} -gt 0 ]] || die "--seeds is empty"
for seed in "${seed_list[@]}"; do
    [[ "$seed" =~ ^[0-9]+$ ]] || die "seed '$seed' is not a non-negative integer"
done

init_paths=()
init_names=()
run_names=()  # the logger name; run.py appends /<init method>
for init in "${init_list[@]}"; do
    if path="$(resolve "configs/init/$init.yaml")"; then run_name="$exp_name"
    elif path="$(resolve "configs/experiments/ablations/$init.yaml")"; then run_name=""
    elif path="$(resolve "$init")"; then run_name=""
    else
        die "unknown init '$init': not configs/init/$init.yaml, configs/experiments/ablations/$init.yaml nor a file"
    fi
    name="$(basename "$path")"
    name="${name%.yaml}"
    name="${name%.yml}"
    init_paths+=("$path")
    init_names+=("$name")
    run_names+=("${run_name:-${exp_name}_${name}}")
done

if [[ -z "$tag" ]]; then
    [[ $resume -eq 0 ]] || die "--resume needs the --tag of the sweep to continue (the suffix of its run directories)"
    tag="$(date +%Y%m%d-%H%M%S)"
fi
[[ "$tag" =~ ^[A-Za-z0-9._-]+$ ]] || die "tag '$tag' may only hold letters, digits, '.', '_' and '-'"

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON=".venv/bin/python"; else PYTHON="python3"; fi
fi
SRUN="${SRUN-srun}"
read -r -a sbatch_args <<< "${SBATCH_ARGS:-}"

quote() {  # words quoted for the shell (single quotes where needed), space-separated
    local out="" word q="'"
    for word in "$@"; do
        if [[ -n "$word" && "$word" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            out+="$word "
        else
            out+="'${word//$q/$q\\$q$q}' "
        fi
    done
    echo "${out% }"
}

commands=()
labels=()
for i in "${!init_paths[@]}"; do
    for seed in "${seed_list[@]}"; do
        args=(fit)
        [[ -z "$data" ]] || args+=(--config "$data")
        args+=(--config "$experiment_path" --config "${init_paths[$i]}" --seed_everything "$seed")
        args+=(--trainer.logger.init_args.name "${run_names[$i]}")
        args+=(--trainer.logger.init_args.version "seed${seed}-${tag}")
        [[ -z "$save_dir" ]] || args+=(--trainer.logger.init_args.save_dir "$save_dir")
        [[ $resume -eq 0 ]] || args+=(--ckpt_path last-if-any)
        args+=("${extra[@]+"${extra[@]}"}")
        job="ne-${exp_name}-${init_names[$i]}-s${seed}"
        if [[ $slurm -eq 1 ]]; then
            if [[ -n "${SBATCH_SCRIPT:-}" ]]; then
                cmd=(sbatch "${sbatch_args[@]+"${sbatch_args[@]}"}" "--job-name=$job" "$SBATCH_SCRIPT" "${args[@]}")
            else
                wrap="cd $(quote "$REPO") && "
                [[ -z "$SRUN" ]] || wrap+="$SRUN "
                wrap+="$(quote "$PYTHON" run.py "${args[@]}")"
                cmd=(sbatch "${sbatch_args[@]+"${sbatch_args[@]}"}" "--job-name=$job" "--output=logs/slurm/%x-%j.out" --wrap "$wrap")
            fi
        else
            cmd=("$PYTHON" run.py "${args[@]}")
        fi
        commands+=("$(quote "${cmd[@]}")")
        labels+=("${init_names[$i]} seed $seed")
    done
done

if [[ $dry_run -eq 1 ]]; then
    echo "# $exp_name: ${#commands[@]} runs, from $REPO"
    printf '%s\n' "${commands[@]}"
    exit 0
fi

cd "$REPO"
if [[ $slurm -eq 1 ]]; then
    [[ -n "${SBATCH_SCRIPT:-}" ]] || mkdir -p logs/slurm
    for i in "${!commands[@]}"; do
        echo "==> submitting ${labels[$i]}: ${commands[$i]}"
        eval "${commands[$i]}"
    done
    echo "submitted ${#commands[@]} jobs; when they finish: $PYTHON run.py report ${save_dir:-logs}/${exp_name}* --out report_out/$exp_name"
    exit 0
fi

failed=()
for i in "${!commands[@]}"; do
    echo "==> [$((i + 1))/${#commands[@]}] ${labels[$i]}: ${commands[$i]}"
    if ! eval "${commands[$i]}"; then
        echo "==> FAILED: ${labels[$i]}" >&2
        failed+=("${labels[$i]}")
    fi
done
echo "==> done: $(( ${#commands[@]} - ${#failed[@]} )) of ${#commands[@]} runs succeeded"
echo "compare them: $PYTHON run.py report ${save_dir:-logs}/${exp_name}* --out report_out/$exp_name"
if [[ ${#failed[@]} -gt 0 ]]; then
    printf 'failed: %s\n' "${failed[@]}" >&2
    exit 1
fi
