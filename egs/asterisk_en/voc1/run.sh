#!/usr/bin/env bash
# asterisk_en/voc1: a flow vocoder on the Asterisk English prompts (Allison Smith, CC-BY-SA-3.0,
# 16 kHz, about 25 minutes; fetched from Debian's archive by stage -1).
#
#   ./run.sh                                   # everything with the CPU config (conf/train.yaml)
#   ./run.sh --conf conf/debug.yaml            # a smoke run of every stage in a few minutes
#   ./run.sh --conf conf/waveglow_gpu.yaml --ngpu 1
#   ./run.sh --stage 3 --resume true           # continue an interrupted training
#   ./run.sh --stage 6 --distill-conf conf/distill_affine.yaml,conf/distill_mixlogistic.yaml
#
# Stages and options: ../../../recipes/voc1/voc.sh --help
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
exec ../../../recipes/voc1/voc.sh --conf conf/train.yaml --feature-config conf/features.yaml "$@"
