#!/usr/bin/env bash
# Kaldi-style local job runner:
#     run_local.sh [JOB=1:N] LOGFILE COMMAND [ARGS...]
# Runs COMMAND N times in parallel, replacing the string JOB in the log file name and in the
# arguments by the job number; each job writes its own log. Exits non-zero if any job failed,
# naming the log of every failed job.
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
logtpl="$1"; shift

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
    {
        echo "# ${args[*]}"
        echo "# started at $(date)"
    } > "$log"
    (
        "${args[@]}" >> "$log" 2>&1
        rc=$?
        echo "# ended at $(date) with status $rc" >> "$log"
        exit $rc
    ) &
    pids+=("$!"); logs+=("$log")
done

failed=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "$0: job failed, see ${logs[$i]}" >&2
        failed=$((failed + 1))
    fi
done
if [ "$failed" -gt 0 ]; then
    echo "$0: $failed of ${#pids[@]} job(s) failed" >&2
    exit 1
fi
