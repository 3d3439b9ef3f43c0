#!/usr/bin/env bash
# CIFAR-10 (Krizhevsky, 2009): the paper-sized RealNVP, Glow and residual-flow configs (GPU).
# Stage 0 fetches and unpacks cifar-10-python.tar.gz (local/download.sh) unless --raw-dir
# already holds the python batches (data_batch_1..5, test_batch, possibly under
# cifar-10-batches-py/). All options of the shared recipe apply (recipes/img1/img.sh --help):
#   ./run.sh --ngpu 8                                  # all three models, 8 GPUs each
#   ./run.sh --conf conf/glow.yaml --ngpu 4 --tag run2
# Expected test bits/dim from the papers: RealNVP 3.49, Glow 3.35, i-ResNet 3.45,
# Residual Flows 3.28 (Flow++ 3.08, not configured here).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=path.sh
. ./path.sh
# shellcheck source=cmd.sh
. ./cmd.sh
exec "${MAIN_ROOT}/recipes/img1/img.sh" --dataset cifar10 --raw-dir downloads/cifar10 \
    --conf "conf/realnvp.yaml conf/glow.yaml conf/resflow.yaml" --ngpu 1 "$@"
