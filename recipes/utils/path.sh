# shellcheck shell=bash
# Environment shared by every recipe (egs/<corpus>/<recipe>/path.sh sources it). Uses the
# python on PATH when a virtual environment is active (CI activates the venv first); otherwise
# activates the repository's .venv when there is one. The repository root (exported as
# MAIN_ROOT) goes on PYTHONPATH so that `python -m vocoflow.cli` works from a fresh clone
# without installing the package.
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export MAIN_ROOT
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "${MAIN_ROOT}/.venv/bin/activate" ]; then
    # shellcheck disable=SC1091
    source "${MAIN_ROOT}/.venv/bin/activate"
fi
export PYTHONPATH="${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export LC_ALL=C
export PYTHONUNBUFFERED=1
