#!/usr/bin/env bash
# vctk/voc1: a flow vocoder on vctk (see README.md).
#
#   ./run.sh                                   # everything (conf/train.yaml: the GPU-sized WaveGlow)
#   ./run.sh --conf conf/debug.yaml            # a smoke run of every stage in a few minutes
#   ./run.sh --ngpu 1                         # train on one GPU
#   ./run.sh --stage 3 --resume true           # continue an interrupted training
#
# Stages and options: ../../../recipes/voc1/voc.sh --help
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
exec ../../../recipes/voc1/voc.sh --conf conf/train.yaml --feature-config conf/features.yaml "$@"
