# shellcheck shell=bash
# How the recipe runs its long jobs (Kaldi style: JOB_RUNNER LOGFILE COMMAND...).
#   run_local.sh  on this machine, output in the log file (default)
#   run_slurm.sh  sbatch --wait; put partition/GPU options in SLURM_OPTS, e.g.
#                 export SLURM_OPTS="--partition=gpu --gres=gpu:1 --time=48:00:00"
export train_cmd="${MAIN_ROOT}/recipes/utils/run_local.sh"
export eval_cmd="${MAIN_ROOT}/recipes/utils/run_local.sh"
