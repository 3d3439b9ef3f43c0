#!/usr/bin/env bash
# Fetch LibriTTS subsets (CC-BY-4.0, 24 kHz WAV) from OpenSLR (resource 60) and unpack them
# to DOWNLOAD_DIR/LibriTTS/<subset>. Idempotent: an unpacked subset is skipped, and a finished
# download is not fetched again.
#
# Usage: local/data_download.sh [DOWNLOAD_DIR [SUBSET...]]
#        (defaults: downloads train-clean-100 dev-clean test-clean)
set -euo pipefail

download_dir=${1:-downloads}
utils=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../../recipes/utils" && pwd)
shift || true
subsets=("$@")
if [ ${#subsets[@]} -eq 0 ]; then
    subsets=(train-clean-100 dev-clean test-clean)
fi

mkdir -p "${download_dir}"
for subset in "${subsets[@]}"; do
    if [ -d "${download_dir}/LibriTTS/${subset}" ]; then
        echo "$0: ${download_dir}/LibriTTS/${subset} already present; skipping"
        continue
    fi
    archive=${download_dir}/${subset}.tar.gz
    "${utils}/fetch.sh" "https://www.openslr.org/resources/60/${subset}.tar.gz" "${archive}"
    tar -xzf "${archive}" -C "${download_dir}"   # writes LibriTTS/<subset>/...
done
echo "$0: corpus ready in ${download_dir}/LibriTTS"
