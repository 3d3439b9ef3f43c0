# shellcheck shell=bash
# Environment of the fashion_mnist/steg1 recipe: sourced by run.sh.
# shellcheck source-path=SCRIPTDIR source=../../../recipes/utils/path.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../../recipes/utils/path.sh"
