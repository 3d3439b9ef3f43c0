# shellcheck shell=bash
# Environment of the vctk/voc1 recipe: sourced by run.sh and local/*.sh.
# Uses the python on PATH (CI activates the venv first); otherwise activates the
# repository's .venv when there is one. The repository root goes on PYTHONPATH so that
# `python -m vocoflow.cli` works from a fresh clone without installing the package.
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "${MAIN_ROOT}/.venv/bin/activate" ]; then
    # shellcheck disable=SC1091
    source "${MAIN_ROOT}/.venv/bin/activate"
fi
export PYTHONPATH="${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export LC_ALL=C
export PYTHONUNBUFFERED=1
