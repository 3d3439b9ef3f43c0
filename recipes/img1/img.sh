#!/usr/bin/env bash
# Shared image-flow recipe (egs/<dataset>/img1/run.sh calls it from the corpus directory).
#
# Stages (--stage / --stop-stage, inclusive); each one skips work that is already done:
#   0  data: fetch the raw files (local/download.sh) unless --raw-dir holds them, then
#      vocoflow prepare-image-data -> data/{train,test}.pt, data/meta.json
#   1  train every --conf with the shared Accelerate trainer (vocoflow train-image)
#      -> exp/<name>/ (checkpoints, TensorBoard, loss.png, model/)
#   2  evaluate: per-pixel categorical baseline (exp/baseline.json) and the test bits/dim of
#      every model (vocoflow evaluate-image -> exp/<name>/eval_test.json); summary in
#      exp/results.md
#   3  samples: grids at several temperatures and a latent interpolation
#      (vocoflow sample-image -> exp/<name>/samples/*.png)
#
# Options ("--name value"):
#   --stage N --stop-stage N   stages to run (default 0..3)
#   --dataset NAME             fashion_mnist | mnist | cifar10 | digits
#   --conf "A.yaml B.yaml"     one or several model configs (space-separated)
#   --tag TAG                  suffix of the experiment names: exp/<conf name>_<TAG>
#   --resume true|false        stage 1: continue an interrupted training run from its newest
#                              checkpoint (default true); false starts it over
#   --ngpu N                   0: CPU; 1: one GPU; >1: accelerate launch --multi_gpu
#   --raw-dir DIR              where the raw files are (or will be downloaded to)
#   --download-dir DIR         where local/download.sh works (default downloads)
#   --temperatures LIST        stage 3, comma-separated (default 0.5,0.7,0.85,1.0)
#   --eval-limit N             stage 2: evaluate only the first N test images (0: all)
#   --cpu-threads N            torch threads per CPU job (default 1: on a shared or
#                              oversubscribed machine, multi-threaded kernels spin-wait for
#                              descheduled threads and run up to 20x slower; 0 = torch's default)
set -euo pipefail

stage=0
stop_stage=3
dataset=""
conf=""
tag=""
resume=true
ngpu=0
raw_dir=""
download_dir=downloads
temperatures=0.5,0.7,0.85,1.0
eval_limit=0
cpu_threads=1

MAIN_ROOT=${MAIN_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source-path=SCRIPTDIR source=../utils/parse_options.sh
. "${MAIN_ROOT}/recipes/utils/parse_options.sh"

if [ -z "${dataset}" ] || [ -z "${conf}" ]; then
    echo "$0: --dataset and --conf are required (see --help)" >&2
    exit 1
fi
case "${resume}" in true|false) ;; *) echo "$0: --resume must be true or false" >&2; exit 1 ;; esac
train_cmd=${train_cmd:-${MAIN_ROOT}/recipes/utils/run_local.sh}
eval_cmd=${eval_cmd:-${MAIN_ROOT}/recipes/utils/run_local.sh}
py=(python -m vocoflow.cli)
data_dir=data
read -r -a confs <<< "${conf}"
thread_args=()
if [ "${ngpu}" -eq 0 ] && [ "${cpu_threads}" -gt 0 ]; then
    thread_args=(--threads "${cpu_threads}")
fi

exp_name() {  # exp/<conf basename>[_<tag>]
    local name
    name=$(basename "$1" .yaml)
    echo "exp/${name}${tag:+_${tag}}"
}

if [ "${stage}" -le 0 ] && [ "${stop_stage}" -ge 0 ]; then
    echo "=== stage 0: data (${dataset}) ==="
    if [ -f "${data_dir}/meta.json" ]; then
        echo "${data_dir} is complete; skipping"
    else
        src_args=()
        if [ "${dataset}" != digits ]; then
            if [ -z "${raw_dir}" ]; then
                echo "$0: --raw-dir is required for ${dataset}" >&2
                exit 1
            fi
            if [ -x local/download.sh ]; then
                local/download.sh "${download_dir}" "${raw_dir}"
            fi
            src_args=(--src "${raw_dir}")
        fi
        "${py[@]}" prepare-image-data --dataset "${dataset}" ${src_args[@]+"${src_args[@]}"} --out-dir "${data_dir}"
    fi
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    for c in "${confs[@]}"; do
        exp=$(exp_name "${c}")
        echo "=== stage 1: train ${c} -> ${exp} ==="
        if [ -f "${exp}/model/model.pt" ] && [ "${exp}/model/model.pt" -nt "${c}" ]; then
            echo "${exp}/model is complete; skipping"
            continue
        fi
        mkdir -p "${exp}"
        args=(train-image --config "${c}" --data-dir "${data_dir}" --out-dir "${exp}" --no-progress)
        if [ "${resume}" = true ]; then
            args+=(--resume)
        fi
        if [ "${ngpu}" -eq 0 ]; then
            launcher=(python -m vocoflow.cli)
            args+=(--cpu ${thread_args[@]+"${thread_args[@]}"})
        elif [ "${ngpu}" -eq 1 ]; then
            launcher=(python -m vocoflow.cli)
        else
            launcher=(accelerate launch --multi_gpu --num_processes "${ngpu}" -m vocoflow.cli)
        fi
        start=${SECONDS}
        ${train_cmd} "${exp}/train.log" "${launcher[@]}" "${args[@]}"
        echo "${exp}: trained in $((SECONDS - start)) s (log: ${exp}/train.log)"
    done
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    echo "=== stage 2: evaluate ==="
    if [ ! -f exp/baseline.json ] || [ "${data_dir}/meta.json" -nt exp/baseline.json ]; then
        mkdir -p exp
        "${py[@]}" image-baseline --data-dir "${data_dir}" --out exp/baseline.json
    fi
    dev_args=()
    if [ "${ngpu}" -eq 0 ]; then
        dev_args=(--cpu ${thread_args[@]+"${thread_args[@]}"})
    fi
    for c in "${confs[@]}"; do
        exp=$(exp_name "${c}")
        out=${exp}/eval_test.json
        if [ -f "${out}" ] && [ "${out}" -nt "${exp}/model/model.pt" ]; then
            echo "${out} is up to date; skipping"
            continue
        fi
        limit_args=()
        if [ "${eval_limit}" -gt 0 ]; then
            limit_args=(--limit "${eval_limit}")
        fi
        ${eval_cmd} "${exp}/eval.log" "${py[@]}" evaluate-image --model-dir "${exp}/model" \
            --data-dir "${data_dir}" --out "${out}" --no-progress ${dev_args[@]+"${dev_args[@]}"} \
            "${limit_args[@]+"${limit_args[@]}"}"
    done
    # summary table over every evaluated experiment
    python - exp/baseline.json exp/*/eval_test.json > exp/results.md <<'PY'
import json, pathlib, sys
base = json.loads(pathlib.Path(sys.argv[1]).read_text())
print("| model | test bits/dim | images | parameters |")
print("|---|---|---|---|")
print(f"| per-pixel categorical baseline | {base['test_bpd']:.4f} | {base['n_test']} | - |")
for p in sys.argv[2:]:
    r = json.loads(pathlib.Path(p).read_text())
    name = pathlib.Path(p).parent.name
    print(f"| {name} ({r['model_type']}) | {r['bpd']:.4f} +- {r['bpd_stderr']:.4f} | {r['n']} | {r['parameters']} |")
PY
    cat exp/results.md
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    echo "=== stage 3: samples ==="
    dev_args=()
    if [ "${ngpu}" -eq 0 ]; then
        dev_args=(--cpu ${thread_args[@]+"${thread_args[@]}"})
    fi
    for c in "${confs[@]}"; do
        exp=$(exp_name "${c}")
        if [ -f "${exp}/samples/.done" ] && [ "${exp}/samples/.done" -nt "${exp}/model/model.pt" ]; then
            echo "${exp}/samples is up to date; skipping"
            continue
        fi
        "${py[@]}" sample-image --model-dir "${exp}/model" --out-dir "${exp}/samples" \
            --temperatures "${temperatures}" --data-dir "${data_dir}" ${dev_args[@]+"${dev_args[@]}"}
        touch "${exp}/samples/.done"
    done
fi
echo "$0: done (stages ${stage}..${stop_stage})"
