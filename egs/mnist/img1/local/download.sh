#!/usr/bin/env bash
# Fetch the four MNIST IDX files (gzip) into RAW_DIR with curl or wget, from MNIST_URL
# (default: a public mirror of the original files). Does nothing when RAW_DIR already holds
# them, so users with the files only pass --raw-dir. Not tested from this project's build
# machines, which cannot reach the mirror.
#
# Usage: local/download.sh DOWNLOAD_DIR RAW_DIR
set -euo pipefail

raw_dir=${2:?usage: $0 DOWNLOAD_DIR RAW_DIR}
url=${MNIST_URL:-https://storage.googleapis.com/cvdf-datasets/mnist}
files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
utils=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../../recipes/utils" && pwd)

mkdir -p "${raw_dir}"
for f in "${files[@]}"; do
    if [ -f "${raw_dir}/${f}.gz" ] || [ -f "${raw_dir}/${f}" ]; then
        continue
    fi
    echo "fetching ${url}/${f}.gz"
    "${utils}/fetch.sh" "${url}/${f}.gz" "${raw_dir}/${f}.gz" \
        || { echo "$0: (or put the files in ${raw_dir} yourself)" >&2; exit 1; }
done
echo "${raw_dir}: MNIST ready"
