# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154  # variables shared with the sourcing runner
# Shared argument handling of run_local.sh and run_slurm.sh (sourced):
#     [JOB=1:N] LOGFILE COMMAND [ARGS...]
# Sets job_first, job_last, job_var, job_logtpl and leaves COMMAND ARGS in "$@";
# job_expand J fills job_log and job_args for job J.
job_first=1; job_last=1; job_var=""
if [[ "${1:-}" =~ ^([A-Za-z]+)=([0-9]+):([0-9]+)$ ]]; then
    job_var="${BASH_REMATCH[1]}"; job_first="${BASH_REMATCH[2]}"; job_last="${BASH_REMATCH[3]}"
    shift
fi
if [ $# -lt 2 ]; then
    echo "usage: $0 [JOB=1:N] LOGFILE COMMAND [ARGS...]" >&2
    exit 2
fi
job_logtpl="$1"; shift
job_cmd=("$@")

job_expand() {
    local j=$1 a
    if [ -n "${job_var}" ]; then
        job_log="${job_logtpl//$job_var/$j}"
        job_args=()
        for a in "${job_cmd[@]}"; do job_args+=("${a//$job_var/$j}"); done
    else
        job_log="${job_logtpl}"; job_args=("${job_cmd[@]}")
    fi
    mkdir -p "$(dirname "${job_log}")"
}

# wait for the background jobs in job_pids (logs in job_logs); name each failed job's log
job_wait_all() {
    local i failed=0
    for i in "${!job_pids[@]}"; do
        if ! wait "${job_pids[$i]}"; then
            echo "$0: job failed, see ${job_logs[$i]}" >&2
            failed=$((failed + 1))
        fi
    done
    if [ "${failed}" -gt 0 ]; then
        echo "$0: ${failed} of ${#job_pids[@]} job(s) failed" >&2
        exit 1
    fi
}
