#!/usr/bin/env bash
# Kaldi-style Slurm job runner, same interface as run_local.sh:
#     run_slurm.sh [JOB=1:N] LOGFILE COMMAND [ARGS...]
# Submits each job with "sbatch --wait" (extra sbatch options from $SLURM_OPTS, e.g.
# "--partition=gpu --gres=gpu:1 --time=24:00:00"), one log per job, and waits for all.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=job_args.sh
. "$(dirname "${BASH_SOURCE[0]}")/job_args.sh"
if ! command -v sbatch > /dev/null; then
    echo "$0: sbatch not found; set train_cmd/decode_cmd to run_local.sh in cmd.sh" >&2
    exit 1
fi
read -r -a opts <<< "${SLURM_OPTS:-}"

job_pids=(); job_logs=()
for ((j = job_first; j <= job_last; j++)); do
    job_expand "$j"
    cmd=$(printf '%q ' "${job_args[@]}")
    sbatch --wait --parsable "${opts[@]+"${opts[@]}"}" --job-name "vocoflow" \
        --output "${job_log}" --wrap "cd $(printf '%q' "$PWD") && $cmd" > /dev/null &
    job_pids+=("$!"); job_logs+=("${job_log}")
done
job_wait_all
