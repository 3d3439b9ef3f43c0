#!/usr/bin/env bash
# Fetch LJSpeech-1.1 (public domain, 13,100 clips of one speaker, 22050 Hz, ~24 h, 2.6 GB)
# from the official tarball and unpack it to DOWNLOAD_DIR/LJSpeech-1.1. Idempotent: skipped
# when the corpus is already unpacked, and a finished download is not fetched again.
#
# Usage: local/data_download.sh [DOWNLOAD_DIR]   (default: downloads)
set -euo pipefail

download_dir=${1:-downloads}
url=https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2
archive=LJSpeech-1.1.tar.bz2
utils=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../../recipes/utils" && pwd)

mkdir -p "${download_dir}"
if [ -f "${download_dir}/LJSpeech-1.1/metadata.csv" ]; then
    echo "$0: ${download_dir}/LJSpeech-1.1 already present; skipping download"
    exit 0
fi
"${utils}/fetch.sh" "${url}" "${download_dir}/${archive}"
tar -xjf "${download_dir}/${archive}" -C "${download_dir}"
echo "$0: corpus ready in ${download_dir}/LJSpeech-1.1"
