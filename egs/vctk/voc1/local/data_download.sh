#!/usr/bin/env bash
# Fetch VCTK-Corpus-0.92 (CC-BY-4.0, 110 speakers, 48 kHz FLAC, ~11 GB) from the Edinburgh
# DataShare and unpack it to DOWNLOAD_DIR/VCTK-Corpus-0.92. Idempotent: skipped when the
# corpus is already unpacked, and a finished download is not fetched again.
#
# Usage: local/data_download.sh [DOWNLOAD_DIR]   (default: downloads)
set -euo pipefail

download_dir=${1:-downloads}
url=https://datashare.ed.ac.uk/bitstream/handle/10283/3443/VCTK-Corpus-0.92.zip
archive=VCTK-Corpus-0.92.zip
corpus=${download_dir}/VCTK-Corpus-0.92
utils=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../../recipes/utils" && pwd)

mkdir -p "${download_dir}"
if [ -d "${corpus}/wav48_silence_trimmed" ] && [ -d "${corpus}/txt" ]; then
    echo "$0: ${corpus} already present; skipping download"
    exit 0
fi
"${utils}/fetch.sh" "${url}" "${download_dir}/${archive}"
# the zip holds wav48_silence_trimmed/, txt/, speaker-info.txt ... at its top level
mkdir -p "${corpus}"
unzip -q -o "${download_dir}/${archive}" -d "${corpus}"
echo "$0: corpus ready in ${corpus}"
