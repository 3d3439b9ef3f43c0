#!/usr/bin/env bash
# Write data/{train,dev,eval} (wav.scp utt2spk spk2utt text, sorted) from LJSpeech-1.1
# (stage 0 of recipes/voc1/voc.sh then validates them). Split (over the ids sorted in C
# locale): the last 100 utterances are eval, the 100 before them dev, the rest train.
#
# Usage: local/data_prep.sh [DOWNLOAD_DIR [DATA_DIR]]   (defaults: downloads data)
set -euo pipefail

download_dir=${1:-downloads}
data_dir=${2:-data}
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../path.sh
. "${script_dir}/../path.sh"

corpus=${download_dir}/LJSpeech-1.1
if [ ! -f "${corpus}/metadata.csv" ]; then
    echo "$0: ${corpus}/metadata.csv not found; run local/data_download.sh first" >&2
    exit 1
fi
python "${script_dir}/data_prep.py" "${corpus}" "${data_dir}"
