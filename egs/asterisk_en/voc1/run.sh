#!/usr/bin/env bash
# asterisk_en/voc1: the Asterisk English prompts (Allison Smith, CC-BY-SA-3.0, 16 kHz).
#
# Stages (--stage / --stop-stage, inclusive):
#   -1  download: apt-get download + dpkg-deb -x + G.722 -> WAV     (local/data_download.sh)
#    0  data prep: data/{train,dev,eval} Kaldi dirs                  (local/data_prep.sh)
#    1  preprocess: log-mel + aligned audio -> dump/<set>/raw        (vocoflow preprocess)
#    2  statistics of train, normalised dumps -> dump/<set>/norm    (compute-stats, normalize)
#
# Every stage reads and writes files only and skips work that is already complete, so a rerun
# resumes. Run from anywhere: the script works in its own directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source-path=SCRIPTDIR source=path.sh
. ./path.sh

stage=-1
stop_stage=2
n_jobs=2
download_dir=downloads
feature_config=conf/features.yaml
sets=(train dev eval)

usage() {
    cat <<USAGE
Usage: $0 [--stage N] [--stop-stage N] [--n-jobs N] [--download-dir DIR] [--feature-config YAML]
  --stage N           first stage to run (default ${stage})
  --stop-stage N      last stage to run (default ${stop_stage})
  --n-jobs N          worker processes for preprocessing (default ${n_jobs})
  --download-dir DIR  where the corpus is fetched (default ${download_dir})
  --feature-config F  MelConfig YAML (default ${feature_config})
USAGE
}

while [ $# -gt 0 ]; do
    case "$1" in
        --stage) stage=$2; shift 2 ;;
        --stop-stage|--stop_stage) stop_stage=$2; shift 2 ;;
        --n-jobs|--nj) n_jobs=$2; shift 2 ;;
        --download-dir) download_dir=$2; shift 2 ;;
        --feature-config) feature_config=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "$0: unknown option $1" >&2; usage >&2; exit 1 ;;
    esac
done

vocoflow() { python -m vocoflow.cli "$@"; }

if [ "${stage}" -le -1 ] && [ "${stop_stage}" -ge -1 ]; then
    echo "=== stage -1: download ==="
    local/data_download.sh "${download_dir}"
fi

if [ "${stage}" -le 0 ] && [ "${stop_stage}" -ge 0 ]; then
    echo "=== stage 0: data preparation ==="
    local/data_prep.sh "${download_dir}" data
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    echo "=== stage 1: preprocess (${n_jobs} jobs) ==="
    for set_name in "${sets[@]}"; do
        out=dump/${set_name}/raw
        if [ -f "${out}/.done" ] && [ "${out}/.done" -nt "data/${set_name}/wav.scp" ] \
            && [ "${out}/.done" -nt "${feature_config}" ]; then
            echo "${out} is complete; skipping"
            continue
        fi
        start=${SECONDS}
        vocoflow preprocess --data-dir "data/${set_name}" --dump-dir "${out}" \
            --config "${feature_config}" --n-jobs "${n_jobs}"
        echo "${set_name}: preprocessed in $((SECONDS - start)) s"
    done
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    echo "=== stage 2: statistics and normalisation ==="
    stats=dump/train/raw/stats.npz
    if [ ! -f "${stats}" ] || [ "dump/train/raw/.done" -nt "${stats}" ]; then
        vocoflow compute-stats --dump-dir dump/train/raw --out "${stats}"
    fi
    for set_name in "${sets[@]}"; do
        out=dump/${set_name}/norm
        if [ -f "${out}/.done" ] && [ "${out}/.done" -nt "${stats}" ] \
            && [ "${out}/.done" -nt "dump/${set_name}/raw/.done" ]; then
            echo "${out} is complete; skipping"
            continue
        fi
        vocoflow normalize --dump-dir "dump/${set_name}/raw" --stats "${stats}" --out-dir "${out}"
    done
fi
echo "$0: done (stages ${stage}..${stop_stage})"
