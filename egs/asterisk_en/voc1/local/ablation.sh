#!/usr/bin/env bash
# Ablation of the source-filter options at equal training time (RESULTS.md): trains and decodes
# conf/ablation/{plain,spectral,excitation,prior,all,source}.yaml (stages 3-4 of the recipe; run
# stages -1..2 first), synthesises with the mel source alone (the flow's mean, no flow) for the
# variants that have one (local/source_only.py), then scores all of them beside Griffin-Lim in
# one table with vocoflow evaluate, and times synthesis with vocoflow benchmark.
# Output: exp/ablation/{results.md,benchmark/*.json}.
#   local/ablation.sh [variant ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
variants=("$@")
[ "${#variants[@]}" -gt 0 ] || variants=(plain spectral excitation prior all source)
gens=() nlls=()
for v in "${variants[@]}"; do
    ./run.sh --stage 3 --stop-stage 4 --conf "conf/ablation/${v}.yaml" --tag "ablation_${v}"
    gens+=(--gen "${v}=exp/ablation_${v}/wav/eval")
    nlls+=(--nll "${v}=exp/ablation_${v}/model")
    if grep -q "^  source: mel" "conf/ablation/${v}.yaml"; then
        python local/source_only.py "exp/ablation_${v}/model" dump/eval/raw/feats.scp \
            "exp/ablation_${v}/wav/source_alone"
        gens+=(--gen "${v}_source_alone=exp/ablation_${v}/wav/source_alone")
    fi
done
mkdir -p exp/ablation/benchmark
vocoflow evaluate --ref dump/eval/raw "${gens[@]}" "${nlls[@]}" --nll-dump dump/eval/norm \
    --griffin-lim --feature-config "exp/ablation_${variants[0]}/model" --out-dir exp/ablation \
    --n-jobs 2 --plots 1
for v in "${variants[@]}"; do
    vocoflow benchmark "exp/ablation_${v}/model" --threads 2 --seconds 4 \
        --json "exp/ablation/benchmark/${v}.json" > /dev/null
    echo "${v}: trained $(cat "exp/ablation_${v}/train_seconds") s"
done
cat exp/ablation/results.md
