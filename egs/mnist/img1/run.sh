#!/usr/bin/env bash
# MNIST (LeCun, Cortes & Burges): image flows in bits/dim next to the per-pixel categorical
# baseline. Stage 0 fetches the four IDX files (local/download.sh) unless --raw-dir already
# holds them (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...).
# All options of the shared recipe apply (recipes/img1/img.sh --help), e.g.
#   ./run.sh --raw-dir /data/mnist                         # files you already have
#   ./run.sh --conf conf/glow.yaml --ngpu 1
# Published MNIST bits/dim (as tabulated by Behrmann et al., 2019, and Chen et al., 2019):
#   NICE 4.36, RealNVP 1.06, Glow 1.05, i-ResNet 1.05, Residual Flows 0.97.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=path.sh
. ./path.sh
# shellcheck source=cmd.sh
. ./cmd.sh
exec "${MAIN_ROOT}/recipes/img1/img.sh" --dataset mnist --raw-dir downloads/mnist \
    --conf "conf/glow.yaml conf/realnvp.yaml conf/nice.yaml" "$@"
