#!/usr/bin/env bash
# Kaldi-style local job runner:
#     run_local.sh [JOB=1:N] LOGFILE COMMAND [ARGS...]
# Runs COMMAND N times in parallel, replacing the string JOB in the log file name and in the
# arguments by the job number; each job writes its own log. Exits non-zero if any job failed,
# naming the log of every failed job.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=job_args.sh
. "$(dirname "${BASH_SOURCE[0]}")/job_args.sh"

job_pids=(); job_logs=()
for ((j = job_first; j <= job_last; j++)); do
    job_expand "$j"
    {
        echo "# ${job_args[*]}"
        echo "# started at $(date)"
    } > "${job_log}"
    (
        "${job_args[@]}" >> "${job_log}" 2>&1
        rc=$?
        echo "# ended at $(date) with status $rc" >> "${job_log}"
        exit $rc
    ) &
    job_pids+=("$!"); job_logs+=("${job_log}")
done
job_wait_all
