#!/usr/bin/env bash
# Fetch the Asterisk core sounds, English, Allison Smith (CC-BY-SA-3.0), from Debian:
#   asterisk-core-sounds-en-g722  the prompts as G.722 at 16 kHz (~25 minutes)
#   asterisk-core-sounds-en       core-sounds-en.txt, the transcripts
# with `apt-get download` (no system install), unpack them with `dpkg-deb -x` and decode
# the G.722 files to 16 kHz 16-bit WAV. Idempotent: finished steps are skipped on rerun.
#
# Usage: local/data_download.sh [DOWNLOAD_DIR]   (default: downloads)
set -euo pipefail

download_dir=${1:-downloads}
packages=(asterisk-core-sounds-en-g722 asterisk-core-sounds-en)
sounds_rel=usr/share/asterisk/sounds/en_US_f_Allison
text_rel=usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz

mkdir -p "${download_dir}"
download_dir=$(cd "${download_dir}" && pwd)
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../path.sh
. "${script_dir}/../path.sh"

# 1. the .deb files
if [ ! -f "${download_dir}/.debs.done" ]; then
    "${script_dir}/../../../../recipes/utils/apt_download.sh" "${download_dir}" "${packages[@]}"
    touch "${download_dir}/.debs.done"
fi

# 2. unpack (no install)
if [ ! -f "${download_dir}/.extract.done" ]; then
    rm -rf "${download_dir}/extracted"
    mkdir -p "${download_dir}/extracted"
    for pkg in "${packages[@]}"; do
        debs=("${download_dir}/${pkg}"_*.deb)
        dpkg-deb -x "${debs[-1]}" "${download_dir}/extracted"
    done
    zcat "${download_dir}/extracted/${text_rel}" > "${download_dir}/core-sounds-en.txt"
    touch "${download_dir}/.extract.done"
fi

# 3. G.722 -> 16 kHz WAV (files are written atomically; existing ones are kept)
if [ ! -f "${download_dir}/.decode.done" ]; then
    python "${script_dir}/decode_g722.py" "${download_dir}/extracted/${sounds_rel}" "${download_dir}/wav"
    touch "${download_dir}/.decode.done"
fi
echo "$0: corpus ready in ${download_dir} ($(find "${download_dir}/wav" -name '*.wav' | wc -l) wav files)"
