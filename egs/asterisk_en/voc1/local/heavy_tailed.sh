#!/usr/bin/env bash
# Normal vs Student-t base of the same WaveGlow at equal steps (RESULTS.md "Student-t base"):
# trains conf/heavy_tailed/{normal,student_t}.yaml one after the other (run stages -1..2 first)
# and prints each run's dev NLL (nats/sample, sigma 1) at every validation.
#   local/heavy_tailed.sh [variant ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
variants=("$@")
[ "${#variants[@]}" -gt 0 ] || variants=(normal student_t)
for v in "${variants[@]}"; do
    mkdir -p "exp/heavy_${v}"
    start=${SECONDS}
    vocoflow train --config "conf/heavy_tailed/${v}.yaml" --train-dump dump/train/norm \
        --dev-dump dump/dev/norm --out-dir "exp/heavy_${v}" --no-progress --cpu --overwrite \
        > "exp/heavy_${v}/train.log" 2>&1
    echo "${v}: trained in $((SECONDS - start)) s"
    grep -i "dev" "exp/heavy_${v}/train.log" | tail -n 8
done
