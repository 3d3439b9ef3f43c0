#!/usr/bin/env bash
# Fetch Fashion-MNIST from Debian (package dataset-fashion-mnist, ~31 MB) with
# `apt-get download` (no system install) and unpack it with `dpkg-deb -x`. The four IDX files
# land, gzip-compressed, in DOWNLOAD_DIR/extracted/usr/share/datasets/fashion-mnist/.
# Does nothing when RAW_DIR already holds them.
#
# Usage: local/download.sh DOWNLOAD_DIR RAW_DIR
set -euo pipefail

download_dir=${1:?usage: $0 DOWNLOAD_DIR RAW_DIR}
raw_dir=${2:?usage: $0 DOWNLOAD_DIR RAW_DIR}
files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

have_all() {
    local f
    for f in "${files[@]}"; do
        [ -f "${raw_dir}/${f}.gz" ] || [ -f "${raw_dir}/${f}" ] || return 1
    done
}

if have_all; then
    echo "${raw_dir}: Fashion-MNIST files present; nothing to download"
    exit 0
fi
mkdir -p "${download_dir}"
debs=("${download_dir}"/dataset-fashion-mnist_*.deb)
if [ ! -f "${debs[0]}" ]; then
    "$(dirname "${BASH_SOURCE[0]}")/../../../../recipes/utils/apt_download.sh" "${download_dir}" dataset-fashion-mnist \
        || { echo "$0: or pass --raw-dir DIR with the four IDX files" >&2; exit 1; }
fi
debs=("${download_dir}"/dataset-fashion-mnist_*.deb)
deb=${debs[0]}
dpkg-deb -x "${deb}" "${download_dir}/extracted"
if ! have_all; then
    echo "$0: ${raw_dir} still lacks the IDX files after unpacking ${deb}" >&2
    echo "    (the package puts them in ${download_dir}/extracted/usr/share/datasets/fashion-mnist)" >&2
    exit 1
fi
echo "${raw_dir}: Fashion-MNIST ready"
