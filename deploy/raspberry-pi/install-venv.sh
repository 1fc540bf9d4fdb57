#!/bin/bash
# The clinic software into a Python venv, every package from the hashed runtime lock.
#
#   deploy/raspberry-pi/install-venv.sh VENV [--wheelhouse DIR]
#
# install.sh runs it for /opt/clinic/venv. It creates VENV (python3 -m venv) when missing,
# then installs requirements/runtime.txt with --require-hashes --no-deps, so that every
# file pip takes is one the lock names, with the lock's hash, and nothing else comes in:
#   1. every locked package but pyscard (wheels for arm64 and x86-64, the packaging tools
#      among them);
#   2. pyscard, which has no Linux wheel: built from its locked source against libpcsclite
#      (gcc, swig) by the locked setuptools (--no-build-isolation: no unlocked download);
#   3. this checkout, with --no-deps, built by the same setuptools.
# --wheelhouse DIR: take the files from DIR only (pip --no-index), for sites without
# network; fill DIR on a Pi that has it with
#   pip download --require-hashes --no-deps -d DIR -r requirements/runtime.txt
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(cd "$HERE/../.." && pwd)
LOCK=$SOURCE/requirements/runtime.txt

die() {
    echo "install-venv.sh: $*" >&2
    exit 1
}

VENV=""
WHEELHOUSE=""
while [ $# -gt 0 ]; do
    case $1 in
        --wheelhouse)
            [ $# -ge 2 ] || die "--wheelhouse needs a directory"
            WHEELHOUSE=$2
            shift
            ;;
        --wheelhouse=*) WHEELHOUSE=${1#--wheelhouse=} ;;
        -h | --help)
            sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        -*) die "unknown option $1 (see --help)" ;;
        *)
            [ -z "$VENV" ] || die "one VENV only (see --help)"
            VENV=$1
            ;;
    esac
    shift
done
[ -n "$VENV" ] || die "which venv? install-venv.sh VENV [--wheelhouse DIR]"
[ -f "$LOCK" ] || die "no lock file $LOCK"
pip_args=(--disable-pip-version-check)
if [ -n "$WHEELHOUSE" ]; then
    [ -d "$WHEELHOUSE" ] || die "--wheelhouse $WHEELHOUSE: no such directory"
    pip_args+=(--no-index --find-links "$(cd "$WHEELHOUSE" && pwd)")
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# The lock without pyscard's entry (its name line, hashes and comments).
awk '/^[^[:space:]#]/ { skip = ($1 ~ /^pyscard==/) } !skip' "$LOCK" >"$WORK/without-pyscard.txt"

pip install "${pip_args[@]}" --require-hashes --no-deps -r "$WORK/without-pyscard.txt"
pip install "${pip_args[@]}" --require-hashes --no-deps --no-build-isolation -r "$LOCK"
pip install "${pip_args[@]}" --no-deps --no-build-isolation --force-reinstall "$SOURCE"
pip check
