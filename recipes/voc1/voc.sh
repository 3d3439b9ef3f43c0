#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Shared vocoder recipe: numbered stages over one corpus directory (egs/<corpus>/voc1).
# Run it from a recipe directory (its run.sh does that) holding local/data_download.sh,
# local/data_prep.sh, conf/, path.sh and cmd.sh.
#
# Stages (--stage / --stop-stage, inclusive; every stage reads and writes files only and skips
# work that is already complete, so rerunning resumes):
#   -1  download                      local/data_download.sh DOWNLOAD_DIR
#    0  data preparation + checks     local/data_prep.sh DOWNLOAD_DIR data; validate-data-dir
#    1  features                      vocoflow preprocess -> dump/<set>/raw
#    2  statistics, normalisation     vocoflow compute-stats, normalize -> dump/<set>/norm
#    3  training                      vocoflow train -> exp/<tag>  (--resume continues)
#    4  decoding                      vocoflow decode: dump/<eval>/raw mels -> exp/<tag>/wav/<eval>
#    5  evaluation                    vocoflow evaluate (+ Griffin-Lim baseline, NLL)
#    6  distillation (--distill-conf) vocoflow distill -> exp/<tag>_<student>, decode, evaluate
#    7  fine-tuning (--finetune-from) a saved vocoder (e.g. from vocoflow import-waveglow) on this
#                                      corpus: features with its front end -> dump/<ft-tag>/<set>,
#                                      vocoflow train --init-from -> exp/<ft-tag>
#    8  decoding + evaluation of the fine-tuned vocoder (as stages 4 and 5)
#
# Options (--name value):
#   --stage N --stop-stage N     stages to run (default -1 .. 5)
#   --conf YAML                  model + training config (default conf/train.yaml)
#   --feature-config YAML        MelConfig of the front end (default conf/features.yaml)
#   --tag NAME                   experiment name (default: the config's file name)
#   --resume true|false          continue training from the newest checkpoint (default false)
#   --n-jobs N                   feature extraction / evaluation processes (default 2)
#   --pitch dio|harvest|none     F0 tracker of stage 1 (dumps' f0.scp; default dio)
#   --ngpu N                     0: CPU, 1: one GPU, >1: accelerate launch --multi_gpu
#   --nproc N                    CPU processes for training with --ngpu 0 (torchrun; default 1)
#   --train-opts "..."           extra options for vocoflow train (e.g. "--steps 500")
#   --decode-opts "..."          extra options for vocoflow decode
#   --distill-conf YAML          student config for stage 6 (several: comma-separated)
#   --distill-opts "..."         extra options for vocoflow distill
#   --download-dir DIR           where stage -1 puts the corpus (default downloads)
#   --finetune-from DIR          stage 7: the vocoder directory to fine-tune
#   --finetune-conf YAML         stage 7: its training settings (default conf/finetune/train.yaml; the
#                                model and features sections come from DIR)
#   --finetune-tag NAME          stage 7: experiment name (default: DIR's name + _ft)
#   --finetune-opts "..."        stage 7: extra options for vocoflow train (e.g.
#                                "--train-feats-scp gta/feats.scp" for TTS-predicted mels)
set -euo pipefail

stage=-1
stop_stage=5
conf=conf/train.yaml
feature_config=conf/features.yaml
tag=""
resume=false
n_jobs=2
pitch=dio
ngpu=0
nproc=1
train_opts=""
decode_opts=""
distill_conf=""
distill_opts=""
download_dir=downloads
finetune_from=""
finetune_conf=conf/finetune/train.yaml
finetune_tag=""
finetune_opts=""
train_set=train
dev_set=dev
eval_set="eval"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../utils/parse_options.sh
. "${here}/../utils/parse_options.sh"

# shellcheck disable=SC1091
[ -f ./path.sh ] && . ./path.sh
# shellcheck disable=SC1091
[ -f ./cmd.sh ] && . ./cmd.sh
train_cmd=${train_cmd:-"${here}/../utils/run_local.sh"}
decode_cmd=${decode_cmd:-"${here}/../utils/run_local.sh"}

[ -n "${tag}" ] || tag=$(basename "${conf}" .yaml)
expdir=exp/${tag}
read -r -a train_extra <<< "${train_opts}"
read -r -a decode_extra <<< "${decode_opts}"
read -r -a distill_extra <<< "${distill_opts}"
read -r -a finetune_extra <<< "${finetune_opts}"

log() { echo "$(date '+%H:%M:%S') [voc.sh] $*"; }
vocoflow() { python -m vocoflow.cli "$@"; }
newer() { [ -e "$1" ] && [ "$1" -nt "$2" ]; }  # $1 exists and is newer than $2

# the command that starts training in one or several processes
launcher() {
    if [ "${ngpu}" -gt 1 ]; then
        echo accelerate launch --multi_gpu --num_processes "${ngpu}" -m vocoflow.cli
    elif [ "${ngpu}" -eq 0 ] && [ "${nproc}" -gt 1 ]; then
        echo torchrun --standalone --nproc_per_node "${nproc}" -m vocoflow.cli
    else
        echo python -m vocoflow.cli
    fi
}
cpu_flag=()
[ "${ngpu}" -eq 0 ] && cpu_flag=(--cpu)
resume_flag=()
[ "${resume}" = true ] && resume_flag=(--resume)

if [ "${stage}" -le -1 ] && [ "${stop_stage}" -ge -1 ]; then
    log "stage -1: download into ${download_dir}"
    local/data_download.sh "${download_dir}"
fi

if [ "${stage}" -le 0 ] && [ "${stop_stage}" -ge 0 ]; then
    log "stage 0: data preparation"
    local/data_prep.sh "${download_dir}" data
    vocoflow validate-data-dir "data/${train_set}" "data/${dev_set}" "data/${eval_set}"
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    for s in "${train_set}" "${dev_set}" "${eval_set}"; do
        out=dump/${s}/raw
        if newer "${out}/.done" "data/${s}/wav.scp" && newer "${out}/.done" "${feature_config}" \
            && { [ "${pitch}" = none ] || [ -f "${out}/f0.scp" ]; }; then
            log "stage 1: ${out} is complete, skipped"
            continue
        fi
        log "stage 1: features of ${s} (${n_jobs} jobs)"
        "${decode_cmd}" "${out}/log/preprocess.log" python -m vocoflow.cli preprocess \
            --data-dir "data/${s}" --dump-dir "${out}" --config "${feature_config}" \
            --n-jobs "${n_jobs}" --pitch "${pitch}" --no-progress
        grep -E "^(utterances|skipped|audio_seconds)" "${out}/.done" | tr '\n' ' '; echo
    done
fi

stats=dump/${train_set}/raw/stats.npz
if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    if ! newer "${stats}" "dump/${train_set}/raw/.done"; then
        log "stage 2: statistics of ${train_set}"
        vocoflow compute-stats --dump-dir "dump/${train_set}/raw" --out "${stats}"
    fi
    for s in "${train_set}" "${dev_set}" "${eval_set}"; do
        out=dump/${s}/norm
        if newer "${out}/.done" "${stats}" && newer "${out}/.done" "dump/${s}/raw/.done"; then
            log "stage 2: ${out} is complete, skipped"
            continue
        fi
        log "stage 2: normalising ${s}"
        vocoflow normalize --dump-dir "dump/${s}/raw" --stats "${stats}" --out-dir "${out}"
    done
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    if [ -f "${expdir}/model/config.yaml" ] && [ "${resume}" != true ]; then
        log "stage 3: ${expdir}/model exists, skipped (--resume true to continue training)"
    else
        log "stage 3: training ${expdir} ($(launcher))"
        mkdir -p "${expdir}/log"
        start=${SECONDS}
        # shellcheck disable=SC2046
        "${train_cmd}" "${expdir}/log/train.log" $(launcher) train --config "${conf}" \
            --train-dump "dump/${train_set}/norm" --dev-dump "dump/${dev_set}/norm" \
            --out-dir "${expdir}" --no-progress "${cpu_flag[@]+"${cpu_flag[@]}"}" \
            "${resume_flag[@]+"${resume_flag[@]}"}" "${train_extra[@]+"${train_extra[@]}"}"
        echo "$((SECONDS - start))" > "${expdir}/train_seconds"
        tail -n 12 "${expdir}/log/train.log"
        log "stage 3: trained in $((SECONDS - start)) s; loss curve ${expdir}/loss.png"
    fi
fi

# decode and evaluate one model directory: $1 = experiment dir, $2 = system name,
# $3 = the dump root of its features (default dump), $4 = the feature space it was trained on
# (norm or raw; default norm)
decode_and_evaluate() {
    local exp=$1 name=$2 dumps=${3:-dump} space=${4:-norm}
    local wavdir=${exp}/wav/${eval_set}
    if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
        if newer "${wavdir}/.done" "${exp}/model/model.pt"; then
            log "stage 4: ${wavdir} is complete, skipped"
        else
            log "stage 4: decoding ${eval_set} with ${exp}/model"
            rm -f "${wavdir}/.done"
            "${decode_cmd}" "${exp}/log/decode.log" python -m vocoflow.cli decode \
                --model "${exp}/model" --feats-scp "${dumps}/${eval_set}/raw/feats.scp" \
                --out-dir "${wavdir}" --no-progress "${decode_extra[@]+"${decode_extra[@]}"}"
            date > "${wavdir}/.done"
            tail -n 3 "${exp}/log/decode.log"
        fi
    fi
    if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
        log "stage 5: evaluating ${name} on ${eval_set}"
        "${decode_cmd}" "${exp}/log/evaluate.log" python -m vocoflow.cli evaluate \
            --ref "${dumps}/${eval_set}/raw" --gen "${name}=${wavdir}" --griffin-lim \
            --feature-config "${exp}/model" --nll "${name}=${exp}/model" \
            --nll-dump "${dumps}/${eval_set}/${space}" --out-dir "${exp}/eval/${eval_set}" \
            --n-jobs "${n_jobs}"
        cat "${exp}/eval/${eval_set}/results.md"
    fi
}

if [ "${stop_stage}" -ge 4 ] && [ "${stage}" -le 5 ]; then
    decode_and_evaluate "${expdir}" "${tag}"
fi

if [ -n "${distill_conf}" ] && [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
    IFS=, read -r -a students <<< "${distill_conf}"
    for student_conf in "${students[@]}"; do
        student=${tag}_$(basename "${student_conf}" .yaml)
        sexp=exp/${student}
        if [ -f "${sexp}/model/config.yaml" ] && [ "${resume}" != true ]; then
            log "stage 6: ${sexp}/model exists, skipped"
        else
            log "stage 6: distilling ${expdir}/model into ${sexp}"
            mkdir -p "${sexp}/log"
            start=${SECONDS}
            # shellcheck disable=SC2046
            "${train_cmd}" "${sexp}/log/distill.log" $(launcher) distill \
                --teacher "${expdir}/model" --config "${student_conf}" \
                --train-dump "dump/${train_set}/norm" --dev-dump "dump/${dev_set}/norm" \
                --out-dir "${sexp}" --no-progress "${cpu_flag[@]+"${cpu_flag[@]}"}" \
                "${resume_flag[@]+"${resume_flag[@]}"}" "${distill_extra[@]+"${distill_extra[@]}"}"
            echo "$((SECONDS - start))" > "${sexp}/train_seconds"
        fi
        stage_save=${stage}; stage=4
        decode_and_evaluate "${sexp}" "${student}"
        stage=${stage_save}
    done
fi
if [ -n "${finetune_from}" ] && [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 7 ]; then
    if [ ! -f "${finetune_from}/config.yaml" ]; then
        log "stage 7: --finetune-from ${finetune_from}: not a vocoder directory (no config.yaml)"
        exit 1
    fi
    ft_tag=${finetune_tag:-$(basename "${finetune_from}")_ft}
    ftexp=exp/${ft_tag}
    ftdump=dump/${ft_tag}
    # trained on normalised features (its stats.npz) or on raw log-mels
    ft_space=$(python -c 'import sys, yaml; d = yaml.safe_load(open(sys.argv[1])) or {}; print("norm" if d.get("normalize") is True else "raw")' "${finetune_from}/config.yaml")
    for s in "${train_set}" "${dev_set}" "${eval_set}"; do
        [ "${stage}" -le 7 ] || break
        out=${ftdump}/${s}/raw
        if newer "${out}/.done" "data/${s}/wav.scp" && newer "${out}/.done" "${finetune_from}/config.yaml"; then
            log "stage 7: ${out} is complete, skipped"
        else
            log "stage 7: features of ${s} with the front end of ${finetune_from}"
            "${decode_cmd}" "${out}/log/preprocess.log" python -m vocoflow.cli preprocess \
                --data-dir "data/${s}" --dump-dir "${out}" --config "${finetune_from}/config.yaml" \
                --n-jobs "${n_jobs}" --pitch "${pitch}" --no-progress
        fi
        if [ "${ft_space}" = norm ] && ! newer "${ftdump}/${s}/norm/.done" "${out}/.done"; then
            vocoflow normalize --dump-dir "${out}" --stats "${finetune_from}/stats.npz" \
                --out-dir "${ftdump}/${s}/norm" --no-progress
        fi
    done
    if [ "${stage}" -gt 7 ]; then
        :
    elif [ -f "${ftexp}/model/config.yaml" ] && [ "${resume}" != true ]; then
        log "stage 7: ${ftexp}/model exists, skipped (--resume true to continue training)"
    else
        log "stage 7: fine-tuning ${finetune_from} into ${ftexp} ($(launcher))"
        mkdir -p "${ftexp}/log"
        start=${SECONDS}
        # shellcheck disable=SC2046
        "${train_cmd}" "${ftexp}/log/train.log" $(launcher) train --config "${finetune_conf}" \
            --init-from "${finetune_from}" --train-dump "${ftdump}/${train_set}/${ft_space}" \
            --dev-dump "${ftdump}/${dev_set}/${ft_space}" --out-dir "${ftexp}" --no-progress \
            "${cpu_flag[@]+"${cpu_flag[@]}"}" "${resume_flag[@]+"${resume_flag[@]}"}" \
            "${finetune_extra[@]+"${finetune_extra[@]}"}"
        echo "$((SECONDS - start))" > "${ftexp}/train_seconds"
    fi
    if [ "${stop_stage}" -ge 8 ]; then
        stage_save=${stage}; stage=4
        decode_and_evaluate "${ftexp}" "${ft_tag}" "${ftdump}" "${ft_space}"
        stage=${stage_save}
    fi
fi
log "done (stages ${stage}..${stop_stage})"
