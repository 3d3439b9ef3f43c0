#!/usr/bin/env bash
# Fetch cifar-10-python.tar.gz (~163 MB) with curl or wget from CIFAR10_URL (default: the
# dataset's home page) and unpack it into RAW_DIR (-> RAW_DIR/cifar-10-batches-py/). Does
# nothing when RAW_DIR already holds the batches. Not tested from this project's build
# machines, which cannot reach the site.
#
# Usage: local/download.sh DOWNLOAD_DIR RAW_DIR
set -euo pipefail

download_dir=${1:?usage: $0 DOWNLOAD_DIR RAW_DIR}
raw_dir=${2:?usage: $0 DOWNLOAD_DIR RAW_DIR}
url=${CIFAR10_URL:-https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz}
md5=c58f30108f718f92721af3b95e74349a  # of cifar-10-python.tar.gz as published
utils=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../../recipes/utils" && pwd)

if [ -f "${raw_dir}/test_batch" ] || [ -f "${raw_dir}/cifar-10-batches-py/test_batch" ]; then
    echo "${raw_dir}: CIFAR-10 batches present; nothing to download"
    exit 0
fi
mkdir -p "${download_dir}" "${raw_dir}"
tarball=${download_dir}/cifar-10-python.tar.gz
"${utils}/fetch.sh" "${url}" "${tarball}" \
    || { echo "$0: (or unpack the batches into ${raw_dir} yourself)" >&2; exit 1; }
if command -v md5sum > /dev/null; then
    got=$(md5sum "${tarball}" | cut -d' ' -f1)
    if [ "${got}" != "${md5}" ]; then
        echo "$0: warning: md5 of ${tarball} is ${got}, expected ${md5}" >&2
    fi
fi
tar -xzf "${tarball}" -C "${raw_dir}"
echo "${raw_dir}: CIFAR-10 ready"
