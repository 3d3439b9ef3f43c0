#!/usr/bin/env bash
# Write data/{train,dev,eval} (wav.scp utt2spk spk2utt text, sorted) from LibriTTS (stage 0 of
# recipes/voc1/voc.sh then validates them): train, dev and eval are whole subsets (default
# train-clean-100, dev-clean, test-clean).
#
# Usage: local/data_prep.sh [DOWNLOAD_DIR [DATA_DIR [TRAIN_SUBSET [DEV_SUBSET [EVAL_SUBSET]]]]]
#        (defaults: downloads data train-clean-100 dev-clean test-clean)
set -euo pipefail

download_dir=${1:-downloads}
data_dir=${2:-data}
train_set=${3:-train-clean-100}
dev_set=${4:-dev-clean}
eval_set=${5:-test-clean}
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../path.sh
. "${script_dir}/../path.sh"

corpus=${download_dir}/LibriTTS
for subset in "${train_set}" "${dev_set}" "${eval_set}"; do
    if [ ! -d "${corpus}/${subset}" ]; then
        echo "$0: ${corpus}/${subset} not found; run local/data_download.sh first" >&2
        exit 1
    fi
done
python "${script_dir}/data_prep.py" "${corpus}/${train_set}" "${data_dir}/train"
python "${script_dir}/data_prep.py" "${corpus}/${dev_set}" "${data_dir}/dev"
python "${script_dir}/data_prep.py" "${corpus}/${eval_set}" "${data_dir}/eval"
