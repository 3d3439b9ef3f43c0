#!/usr/bin/env bash
# Kaldi-style Slurm job runner, same interface as run_local.sh:
#     run_slurm.sh [JOB=1:N] LOGFILE COMMAND [ARGS...]
# Submits each job with "sbatch --wait" (extra sbatch options from $SLURM_OPTS, e.g.
# "--partition=gpu --gres=gpu:1 --time=24:00:00"), one log per job, and waits for all.
set -uo pipefail

first=1; last=1; jobvar=""
if [[ "${1:-}" =~ ^([A-Za-z]+)=([0-9]+):([0-9]+)$ ]]; then
    jobvar="${BASH_REMATCH[1]}"; first="${BASH_REMATCH[2]}"; last="${BASH_REMATCH[3]}"
    shift
fi
if [ $# -lt 2 ]; then
    echo "usage: $0 [JOB=1:N] LOGFILE COMMAND [ARGS...]" >&2
    exit 2
fi
if ! command -v sbatch > /dev/null; then
    echo "$0: sbatch not found; set train_cmd/decode_cmd to run_local.sh in cmd.sh" >&2
    exit 1
fi
logtpl="$1"; shift
read -r -a opts <<< "${SLURM_OPTS:-}"

pids=(); logs=()
for ((j = first; j <= last; j++)); do
    if [ -n "$jobvar" ]; then
        log="${logtpl//$jobvar/$j}"
        args=()
        for a in "$@"; do args+=("${a//$jobvar/$j}"); done
    else
        log="$logtpl"; args=("$@")
    fi
    mkdir -p "$(dirname "$log")"
    cmd=$(printf '%q ' "${args[@]}")
    sbatch --wait --parsable "${opts[@]+"${opts[@]}"}" --job-name "vocoflow" \
        --output "$log" --wrap "cd $(printf '%q' "$PWD") && $cmd" > /dev/null &
    pids+=("$!"); logs+=("$log")
done

failed=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "$0: job failed, see ${logs[$i]}" >&2
        failed=$((failed + 1))
    fi
done
[ "$failed" -eq 0 ] || { echo "$0: $failed job(s) failed" >&2; exit 1; }
