#!/usr/bin/env bash
# Variational inference with planar, radial and IAF posteriors on the 2-D energy targets
# U1-U4 of Rezende & Mohamed (2015): one `vocoflow fit-vi` run per target, all models with the
# same number of steps. Writes results/<target>/results.json and results/<target>/densities.png.
# Usage: ./run.sh [STEPS] [TARGETS...]   (defaults: 1000 steps; u1 u2 u3 u4)
set -euo pipefail
steps=${1:-1000}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(u1 u2 u3 u4)
models=planar:2,planar:8,planar:32,radial:2,radial:8,radial:32,iaf:4
for t in "${targets[@]}"; do
    vocoflow fit-vi --target "$t" --models "$models" --steps "$steps" --batch 256 --lr 1e-2 \
        --seed 0 --out "results/$t" --no-progress
done
