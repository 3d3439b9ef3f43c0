#!/usr/bin/env bash
# Download URL to FILE with curl (or wget), through FILE.part, so that an interrupted download
# never looks finished. Does nothing when FILE already exists.
#
# Usage: recipes/utils/fetch.sh URL FILE
set -euo pipefail

url=${1:?usage: $0 URL FILE}
file=${2:?usage: $0 URL FILE}

[ -f "${file}" ] && exit 0
mkdir -p "$(dirname "${file}")"
if command -v curl > /dev/null; then
    curl -fL --retry 3 -o "${file}.part" "${url}"
elif command -v wget > /dev/null; then
    wget -O "${file}.part" "${url}"
else
    echo "$0: need curl or wget to fetch ${url} (or put the file at ${file} yourself)" >&2
    exit 1
fi
mv "${file}.part" "${file}"
