#!/usr/bin/env bash
# Parse "--name value" (and "--name=value") flags into existing shell variables.
#
# Source it after declaring the defaults:
#     stage=0; conf=conf/default.yaml; n_jobs=4
#     . recipes/utils/parse_options.sh
# "--n-jobs 8" sets n_jobs=8 (dashes become underscores). Only variables that already exist
# may be set, so a typo is an error instead of a silently ignored option. "--help" prints the
# script's leading comment block. Positional arguments are left in "$@".

_po_usage() {
    sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
}

_po_rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            _po_usage
            exit 0
            ;;
        --*=*)
            _po_name="${1%%=*}"
            _po_value="${1#*=}"
            shift
            ;;
        --*)
            _po_name="$1"
            if [ $# -lt 2 ]; then
                echo "$0: option $1 needs a value" >&2
                exit 1
            fi
            _po_value="$2"
            shift 2
            ;;
        *)
            _po_rest+=("$1")
            shift
            continue
            ;;
    esac
    _po_var="${_po_name#--}"
    _po_var="${_po_var//-/_}"
    if ! [[ "$_po_var" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ -z "${!_po_var+set}" ]; then
        echo "$0: unknown option $_po_name" >&2
        exit 1
    fi
    printf -v "$_po_var" '%s' "$_po_value"
done
set -- "${_po_rest[@]+"${_po_rest[@]}"}"
unset _po_name _po_value _po_var _po_rest
