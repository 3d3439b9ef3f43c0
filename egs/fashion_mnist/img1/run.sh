#!/usr/bin/env bash
# Fashion-MNIST (Zalando Research, MIT licence; Debian package dataset-fashion-mnist):
# Glow and RealNVP on a CPU budget next to the per-pixel categorical baseline.
# All options of the shared recipe apply (recipes/img1/img.sh --help), e.g.
#   ./run.sh                                   # stages 0..3 with the CPU configs
#   ./run.sh --stage 2 --conf conf/glow_cpu.yaml
#   ./run.sh --conf conf/glow.yaml --ngpu 1    # the larger GPU config
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=path.sh
. ./path.sh
# shellcheck source=cmd.sh
. ./cmd.sh
exec "${MAIN_ROOT}/recipes/img1/img.sh" --dataset fashion_mnist \
    --raw-dir downloads/extracted/usr/share/datasets/fashion-mnist \
    --conf "conf/glow_cpu.yaml conf/realnvp_cpu.yaml" "$@"
