# shellcheck shell=bash
# Job runners of this recipe (Kaldi's cmd.sh). Each takes: [JOB=1:N] LOGFILE COMMAND ARGS...
#   run_local.sh  runs on this machine, one log per job (default)
#   run_slurm.sh  submits with sbatch --wait; put partition/GPU options in SLURM_OPTS, e.g.
#                 export SLURM_OPTS="--partition=gpu --gres=gpu:1 --time=48:00:00"
# Multi-GPU or multi-node training is chosen with run.sh --ngpu N (accelerate launch).
utils=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../recipes/utils" && pwd)
export train_cmd="${utils}/run_local.sh"
export decode_cmd="${utils}/run_local.sh"
# export train_cmd="${utils}/run_slurm.sh"
