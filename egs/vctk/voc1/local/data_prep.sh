#!/usr/bin/env bash
# Write data/{train,dev,eval} (wav.scp utt2spk spk2utt text, sorted) from VCTK-Corpus-0.92
# (mic1 recordings only; utterances without a transcript, e.g. all of p315, are skipped);
# stage 0 of recipes/voc1/voc.sh then validates them. Split, per speaker over its utterance
# ids sorted in C locale: the last 2 are eval, the 2 before them dev, the rest train.
#
# Usage: local/data_prep.sh [DOWNLOAD_DIR [DATA_DIR]]   (defaults: downloads data)
set -euo pipefail

download_dir=${1:-downloads}
data_dir=${2:-data}
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../path.sh
. "${script_dir}/../path.sh"

corpus=${download_dir}/VCTK-Corpus-0.92
if [ ! -d "${corpus}/wav48_silence_trimmed" ] || [ ! -d "${corpus}/txt" ]; then
    echo "$0: ${corpus}/{wav48_silence_trimmed,txt} not found; run local/data_download.sh first" >&2
    exit 1
fi
python "${script_dir}/data_prep.py" "${corpus}" "${data_dir}"
