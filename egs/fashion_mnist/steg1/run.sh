#!/usr/bin/env bash
# Fashion-MNIST invertible image hiding (HiNet-style, Jing et al., 2021): hide test image i+1
# inside test image i with a Haar wavelet front end and invertible hiding blocks.
#
# Stages (--stage / --stop-stage, inclusive); each one skips work that is already done:
#   0  data: vocoflow prepare-image-data from the raw IDX files that the img1 recipe
#      downloaded (../img1/downloads/...; run ../img1/run.sh --stage 0 --stop-stage 0 first)
#      -> data/{train,test}.pt, data/meta.json
#   1  train (vocoflow train-stego) -> exp/<conf name>/ (checkpoints, TensorBoard, loss.png,
#      model/)
#   2  evaluate on the test set: PSNR/SSIM of the 8-bit container vs the cover and of the
#      recovered secret vs the secret (vocoflow evaluate-stego -> exp/<name>/eval_test.json,
#      summary in exp/results.md)
#   3  grid: cover, container, secret, recovered, 10x |container - cover| for the first 8
#      pairs -> exp/<name>/grid.png
#
# Options ("--name value"):
#   --stage N --stop-stage N   stages to run (default 0..3)
#   --conf FILE                model config (default conf/hinet_cpu.yaml)
#   --resume true|false        stage 1: continue from the newest checkpoint (default true)
#   --ngpu N                   0: CPU (default); 1: one GPU
#   --raw-dir DIR              the raw Fashion-MNIST IDX files
#   --eval-limit N             stage 2: only the first N pairs (0: all 9,999)
#   --cpu-threads N            torch threads of CPU jobs (default 1; 0 = torch's default)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=path.sh
. ./path.sh
# shellcheck source=cmd.sh
. ./cmd.sh

stage=0
stop_stage=3
conf=conf/hinet_cpu.yaml
resume=true
ngpu=0
raw_dir=../img1/downloads/extracted/usr/share/datasets/fashion-mnist
eval_limit=0
cpu_threads=1

# shellcheck source=../../../recipes/utils/parse_options.sh
. "${MAIN_ROOT}/recipes/utils/parse_options.sh"

case "${resume}" in true|false) ;; *) echo "$0: --resume must be true or false" >&2; exit 1 ;; esac
py=(python -m vocoflow.cli)
data_dir=data
exp=exp/$(basename "${conf}" .yaml)
dev_args=()
if [ "${ngpu}" -eq 0 ]; then
    dev_args=(--cpu)
    if [ "${cpu_threads}" -gt 0 ]; then
        dev_args+=(--threads "${cpu_threads}")
    fi
fi

if [ "${stage}" -le 0 ] && [ "${stop_stage}" -ge 0 ]; then
    echo "=== stage 0: data ==="
    if [ -f "${data_dir}/meta.json" ]; then
        echo "${data_dir} is complete; skipping"
    else
        if [ ! -d "${raw_dir}" ]; then
            echo "$0: ${raw_dir} does not exist: run ../img1/run.sh --stage 0 --stop-stage 0 first" >&2
            exit 1
        fi
        "${py[@]}" prepare-image-data --dataset fashion_mnist --src "${raw_dir}" --out-dir "${data_dir}"
    fi
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    echo "=== stage 1: train ${conf} -> ${exp} ==="
    if [ -f "${exp}/model/model.pt" ] && [ "${exp}/model/model.pt" -nt "${conf}" ]; then
        echo "${exp}/model is complete; skipping"
    else
        mkdir -p "${exp}"
        args=(train-stego --config "${conf}" --data-dir "${data_dir}" --out-dir "${exp}" --no-progress)
        if [ "${resume}" = true ]; then
            args+=(--resume)
        fi
        start=${SECONDS}
        ${train_cmd} "${exp}/train.log" "${py[@]}" "${args[@]}" ${dev_args[@]+"${dev_args[@]}"}
        echo "${exp}: trained in $((SECONDS - start)) s (log: ${exp}/train.log)"
    fi
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    echo "=== stage 2: evaluate ${exp} ==="
    out=${exp}/eval_test.json
    if [ -f "${out}" ] && [ "${out}" -nt "${exp}/model/model.pt" ]; then
        echo "${out} is up to date; skipping"
    else
        limit_args=()
        if [ "${eval_limit}" -gt 0 ]; then
            limit_args=(--limit "${eval_limit}")
        fi
        ${eval_cmd} "${exp}/eval.log" "${py[@]}" evaluate-stego --model-dir "${exp}/model" \
            --data-dir "${data_dir}" --out "${out}" --no-progress ${dev_args[@]+"${dev_args[@]}"} \
            ${limit_args[@]+"${limit_args[@]}"}
    fi
    python - "${out}" > exp/results.md <<'PY'
import json, pathlib, sys
r = json.loads(pathlib.Path(sys.argv[1]).read_text())
print("| pair | PSNR (dB) | SSIM |")
print("|---|---|---|")
for k, name in (("container", "container vs cover"), ("recovered", "recovered vs secret")):
    print(f"| {name} | {r['psnr_' + k]:.2f} +- {r['psnr_' + k + '_stderr']:.2f} "
          f"| {r['ssim_' + k]:.4f} +- {r['ssim_' + k + '_stderr']:.4f} |")
print(f"\n{r['pairs']} test pairs (image i hides image i+1), 8-bit container: "
      f"{r['quantized_container']}, reveal-noise seed {r['seed']}, {r['parameters']} parameters")
PY
    cat exp/results.md
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    echo "=== stage 3: grid ${exp}/grid.png ==="
    "${py[@]}" evaluate-stego --model-dir "${exp}/model" --data-dir "${data_dir}" --limit 8 \
        --grid "${exp}/grid.png" --grid-pairs 8 --out "${exp}/grid_pairs.json" --no-progress \
        ${dev_args[@]+"${dev_args[@]}"} > /dev/null
    echo "${exp}/grid.png: rows of cover, container, secret, recovered, 10x |container - cover|"
fi
echo "$0: done (stages ${stage}..${stop_stage})"
