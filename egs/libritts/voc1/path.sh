# shellcheck shell=bash
# Environment of the libritts/voc1 recipe: sourced by run.sh and local/*.sh (see the shared script).
# shellcheck source-path=SCRIPTDIR source=../../../recipes/utils/path.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../../recipes/utils/path.sh"
