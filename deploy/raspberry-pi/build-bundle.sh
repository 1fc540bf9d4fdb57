#!/bin/bash
# The offline install bundle for a clinic terminal, built on a machine with network.
#
#   deploy/raspberry-pi/build-bundle.sh --arch arm64|amd64 --out DIR [--clinic PROGRAM]
#
# (`make pi-bundle ARCH=arm64` runs it.) DIR then holds what `install.sh --bundle DIR`
# installs with no network at all:
#   BUNDLE.json          {"format": 1, "arch", "debian": "bookworm", "version", "built_at"}
#   SHA256SUMS           every other file's SHA-256
#   debs/                the Debian packages (packages.sh) and everything they depend on,
#                        for Debian bookworm (+ updates, security) on ARCH: a flat apt
#                        repository (debs/Packages)
#   release/             the software: `clinic release build` (unsigned release.json)
#   deploy/raspberry-pi/ these scripts
# The packages are resolved by this machine's apt, for ARCH (no emulation), with its own
# lists and an empty dpkg status, so the whole closure comes whatever is installed here.
# Downloads are kept in $CLINIC_PI_CACHE (default /var/cache/clinic-pi): a second build
# is quick. $DEBIAN_MIRROR / $DEBIAN_SECURITY_MIRROR choose the mirrors (e.g.
# https://mirrors.tuna.tsinghua.edu.cn/debian). DIR is replaced only once it is complete.
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(cd "$HERE/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=packages.sh
. "$HERE/packages.sh"

ARCH=""
OUT=""
CLINIC=${CLINIC:-clinic}
CACHE=${CLINIC_PI_CACHE:-/var/cache/clinic-pi}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
KEYRING=${DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}

die() {
    echo "build-bundle.sh: $*" >&2
    exit 1
}
step() { echo "== $* ($(date +%T))"; }

while [ $# -gt 0 ]; do
    case $1 in
        --arch)
            [ $# -ge 2 ] || die "--arch needs arm64 or amd64"
            ARCH=$2
            shift
            ;;
        --out)
            [ $# -ge 2 ] || die "--out needs a directory"
            OUT=$2
            shift
            ;;
        --clinic)
            [ $# -ge 2 ] || die "--clinic needs a program"
            CLINIC=$2
            shift
            ;;
        -h | --help)
            sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
case $ARCH in
    arm64) MACHINE=aarch64 ;;
    amd64) MACHINE=x86_64 ;;
    *) die "--arch arm64 or --arch amd64 (Debian's names), not '$ARCH'" ;;
esac
[ -n "$OUT" ] || die "--out DIR is needed"
[ -f "$KEYRING" ] || die "no $KEYRING (apt-get install debian-archive-keyring)"
command -v dpkg-scanpackages >/dev/null || die "no dpkg-scanpackages (apt-get install dpkg-dev)"
command -v "$CLINIC" >/dev/null || die "no clinic program '$CLINIC' (--clinic .venv/bin/clinic)"
mkdir -p "$(dirname "$OUT")"
OUT=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")
PARTIAL=$OUT.partial
rm -rf "$PARTIAL"
mkdir -p "$PARTIAL/debs" "$PARTIAL/deploy"

# ---- the Debian packages: apt of this machine, its own config, lists and cache ------------

APT_DIR=$CACHE/apt-bookworm-$ARCH
mkdir -p "$APT_DIR/etc/apt.conf.d" "$APT_DIR/etc/preferences.d" "$APT_DIR/etc/sources.list.d" \
    "$APT_DIR/lists/partial" "$APT_DIR/archives/partial" ||
    die "cannot write $CACHE: run as root, or set CLINIC_PI_CACHE to a folder of yours"
: >"$APT_DIR/status" # nothing installed: the whole dependency closure is downloaded
cat >"$APT_DIR/etc/sources.list" <<EOF
deb [signed-by=$KEYRING] $MIRROR bookworm main
deb [signed-by=$KEYRING] $MIRROR bookworm-updates main
deb [signed-by=$KEYRING] $SECURITY bookworm-security main
EOF
# APT_CONFIG: read instead of /etc/apt/apt.conf, and Dir::Etc moves the .d folders too,
# so nothing of this machine's apt configuration (pins, proxies, hooks) takes part.
cat >"$APT_DIR/apt.conf" <<EOF
Dir::Etc "$APT_DIR/etc";
Dir::State "$APT_DIR";
Dir::State::Lists "$APT_DIR/lists";
Dir::State::status "$APT_DIR/status";
Dir::Cache "$APT_DIR/cache";
Dir::Cache::archives "$APT_DIR/archives";
APT::Architecture "$ARCH";
APT::Architectures { "$ARCH"; };
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT::Sandbox::User "root";
EOF
apt_private() { APT_CONFIG=$APT_DIR/apt.conf DEBIAN_FRONTEND=noninteractive apt-get -q "$@"; }

step "Debian bookworm package lists for $ARCH"
apt_private update
step "resolving and downloading ${RUN_PACKAGES[*]} ${BUILD_PACKAGES[*]}"
apt_private --download-only -y install --no-install-recommends "${RUN_PACKAGES[@]}" "${BUILD_PACKAGES[@]}"
# Exactly the packages of this resolution (the cache may hold older versions too).
apt_private -s install "${RUN_PACKAGES[@]}" "${BUILD_PACKAGES[@]}" >"$PARTIAL/resolution"
count=0
while read -r name version; do
    file=$(printf '%s_%s_' "$name" "${version//:/%3a}")
    found=("$APT_DIR/archives/$file"*.deb)
    [ -f "${found[0]}" ] || die "$name $version was not downloaded"
    ln -f "${found[0]}" "$PARTIAL/debs/" 2>/dev/null || cp "${found[0]}" "$PARTIAL/debs/"
    count=$((count + 1))
done < <(awk '$1 == "Inst" { gsub(/[()]/, "", $3); print $2, $3 }' "$PARTIAL/resolution")
rm "$PARTIAL/resolution"
step "a flat apt repository of $count packages"
(cd "$PARTIAL/debs" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null)

# ---- the software -----------------------------------------------------------------------------

step "the release for $MACHINE"
"$CLINIC" release build --arch "$MACHINE" --source "$SOURCE" --out "$PARTIAL/release"
version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifest"]["version"])' \
    "$PARTIAL/release/release.json")

cp -a "$HERE" "$PARTIAL/deploy/raspberry-pi"
cat >"$PARTIAL/BUNDLE.json" <<EOF
{"format": 1, "arch": "$ARCH", "debian": "bookworm", "version": "$version", "built_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"}
EOF
(cd "$PARTIAL" && find . -type f -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 sha256sum >"$APT_DIR/SHA256SUMS")
mv "$APT_DIR/SHA256SUMS" "$PARTIAL/SHA256SUMS"

rm -rf "$OUT"
mv -T "$PARTIAL" "$OUT"
step "$OUT: $(du -sh --apparent-size "$OUT" | cut -f1), $count packages, release $version"
