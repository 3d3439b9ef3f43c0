#!/usr/bin/env bash
# Normal vs Student-t base of the same WaveGlow at equal steps (RESULTS.md "Student-t base"):
# trains conf/heavy_tailed/{normal,student_t}.yaml one after the other (run stages -1..2 first)
# and prints each run's dev NLL (nats/sample, sigma 1) at every validation.
#   local/heavy_tailed.sh [variant ...]        (SEED=N: train.seed N, into exp/heavy_<v>_seedN)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
variants=("$@")
[ "${#variants[@]}" -gt 0 ] || variants=(normal student_t)
seed_opts=() suffix=""
if [ -n "${SEED:-}" ]; then
    seed_opts=(--set "train.seed=${SEED}") suffix="_seed${SEED}"
fi
for v in "${variants[@]}"; do
    out="exp/heavy_${v}${suffix}"
    mkdir -p "${out}"
    start=${SECONDS}
    vocoflow train --config "conf/heavy_tailed/${v}.yaml" --train-dump dump/train/norm \
        --dev-dump dump/dev/norm --out-dir "${out}" --no-progress --cpu --overwrite \
        "${seed_opts[@]+"${seed_opts[@]}"}" > "${out}/train.log" 2>&1
    echo "${v}${suffix}: trained in $((SECONDS - start)) s"
    grep -i "dev nll" "${out}/train.log" | tail -n 8
done
