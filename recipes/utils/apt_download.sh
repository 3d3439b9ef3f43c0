#!/usr/bin/env bash
# Download Debian packages' .deb files into DIR with `apt-get download` (no system install).
# As root, apt writes there without its sandbox user, and a failed download is retried once
# after `apt-get update`; otherwise a failure says to run that update.
#
# Usage: recipes/utils/apt_download.sh DIR PACKAGE...
set -euo pipefail

dir=${1:?usage: $0 DIR PACKAGE...}
shift
[ $# -gt 0 ] || { echo "usage: $0 DIR PACKAGE..." >&2; exit 2; }

apt_opts=()
if [ "$(id -u)" = 0 ]; then
    apt_opts=(-o APT::Sandbox::User=root)
fi
fetch() { (cd "${dir}" && apt-get "${apt_opts[@]+"${apt_opts[@]}"}" download "$@"); }
if ! fetch "$@"; then
    if [ "$(id -u)" = 0 ]; then
        echo "$0: apt-get download failed; running apt-get update and retrying" >&2
        apt-get update -qq
        fetch "$@"
    else
        echo "$0: apt-get download failed; run 'apt-get update' (as root) and retry" >&2
        exit 1
    fi
fi
