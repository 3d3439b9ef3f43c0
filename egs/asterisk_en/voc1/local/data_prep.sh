#!/usr/bin/env bash
# Write data/{train,dev,eval} (wav.scp utt2spk spk2utt text, sorted) from the downloaded
# corpus (stage 0 of recipes/voc1/voc.sh then validates them). Files whose content does not
# change are not rewritten, so later stages that compare modification times are not redone.
#
# Usage: local/data_prep.sh [DOWNLOAD_DIR [DATA_DIR]]   (defaults: downloads data)
set -euo pipefail

download_dir=${1:-downloads}
data_dir=${2:-data}
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../path.sh
. "${script_dir}/../path.sh"

if [ ! -f "${download_dir}/.decode.done" ]; then
    echo "$0: ${download_dir} is not ready; run local/data_download.sh first" >&2
    exit 1
fi
python "${script_dir}/data_prep.py" "${download_dir}/wav" "${download_dir}/core-sounds-en.txt" "${data_dir}"
