#!/bin/bash
# Turn Raspberry Pi OS Bookworm (Lite, 64-bit) into a clinic settlement terminal.
#
#   sudo install.sh --bundle PATH      # offline: everything from `make pi-bundle` (README)
#   sudo deploy/raspberry-pi/install.sh   # from a checkout, packages from the network
#   sudo deploy/raspberry-pi/install.sh --root SCRATCH   # files only, into SCRATCH (tests)
#
# Idempotent by state: each step checks the state it wants (packages installed, the venv
# at the release and working, units loaded, udev rules loaded) and acts only when it
# differs, so a step that failed last time is done again by the next run, and a run with
# nothing to do changes nothing (not even a file's modification time) and says "nothing to
# change". See README.md next to this script.
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(cd "$HERE/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=packages.sh
. "$HERE/packages.sh"

ROOT=""
DO_APT=1
DO_SYSTEMCTL=1
DO_VENV=1
APPLY=0
BUNDLE=""

OPT=/opt/clinic
VENV=$OPT/venv
WHEELS=$OPT/wheels
STATE=$OPT/state
DATA_DIR=/var/lib/clinic
SERVICE_USER=clinic
KIOSK_USER=clinic-kiosk
UNITS=(
    clinic-terminal.service clinic-healthcheck.service clinic-healthcheck.timer
    clinic-backup.service clinic-backup.timer clinic-kiosk.service
    clinic-update.service clinic-update.path clinic-update.timer
)
ENABLE=(pcscd.socket clinic-terminal.service clinic-healthcheck.timer clinic-backup.timer
    clinic-kiosk.service clinic-update.path clinic-update.timer)

usage() {
    cat <<'EOF'
Usage: install.sh [--bundle PATH] [--no-apt] [--no-venv] [--no-systemctl]
       install.sh --root DIR [--apply]

Installs the clinic terminal on this Raspberry Pi OS / Debian Bookworm machine (run as
root): Debian packages (--no-install-recommends), the users clinic and clinic-kiosk,
/var/lib/clinic (0700), the software as a release venv in /opt/clinic/releases/VERSION
(/opt/clinic/venv points to it), systemd units, udev rules, config files; enables the
services. Safe to run again: it changes only what differs from the state it wants.

  --bundle PATH     install from an offline bundle (`make pi-bundle`): packages from its
                    apt repository, the software from its release; no network at all.
                    The default when this script is the bundle's own copy.
                    Without a bundle: packages from the network (apt), the software built
                    from this checkout (its hashed lock, from PyPI).
  --no-apt          do not install Debian packages
  --no-venv         do not install the software
  --no-systemctl    do not reload or (re)start services or udev (units are still enabled)
  --root DIR        write every file under DIR instead of /, for tests and image builds;
                    implies --no-apt --no-venv --no-systemctl. DIR/etc/passwd and
                    DIR/etc/group must exist (users are added there with useradd --root).
  --apply           with --root: still run the reload/restart step, with the systemctl and
                    udevadm found on PATH (tests, with stand-ins)
EOF
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}
refuse() { # zh en: an admin's error, Chinese first
    echo "install.sh: $1" >&2
    echo "install.sh: $2" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
        --root)
            [ $# -ge 2 ] || die "--root needs a directory"
            ROOT=$2
            shift
            ;;
        --root=*) ROOT=${1#--root=} ;;
        --bundle)
            [ $# -ge 2 ] || die "--bundle needs a directory"
            BUNDLE=$2
            shift
            ;;
        --bundle=*) BUNDLE=${1#--bundle=} ;;
        --no-apt) DO_APT=0 ;;
        --no-venv) DO_VENV=0 ;;
        --no-systemctl) DO_SYSTEMCTL=0 ;;
        --apply) APPLY=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

[ "$(id -u)" = 0 ] || die "run as root: sudo $0 $*"
if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || die "--root $ROOT: no such directory"
    ROOT=$(cd "$ROOT" && pwd)
    [ "$ROOT" != / ] || die "--root /: run without --root to install on this machine"
    if [ ! -f "$ROOT/etc/passwd" ] || [ ! -f "$ROOT/etc/group" ]; then
        die "--root $ROOT: $ROOT/etc/passwd and $ROOT/etc/group must exist"
    fi
    DO_APT=0
    DO_VENV=0
    DO_SYSTEMCTL=$APPLY
fi
# The bundle's own copy of this script installs from that bundle.
[ -n "$BUNDLE" ] || [ ! -f "$SOURCE/BUNDLE.json" ] || BUNDLE=$SOURCE

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

CHANGES=0
CHANGED=() # paths (and markers) changed in this run
changed() {
    CHANGES=$((CHANGES + 1))
    CHANGED+=("$1")
    echo "changed: $2"
}
was_changed() { # glob: did this run change a matching path?
    local item
    for item in "${CHANGED[@]+"${CHANGED[@]}"}"; do
        # shellcheck disable=SC2053 # $1 is a glob on purpose
        [[ $item == $1 ]] && return 0
    done
    return 1
}

# ---- the bundle ----------------------------------------------------------------------------

# Checked before anything is changed: every file as built, for this machine.
check_bundle() {
    [ -n "$BUNDLE" ] || return 0
    if [ ! -f "$BUNDLE/BUNDLE.json" ] || [ ! -f "$BUNDLE/SHA256SUMS" ]; then
        refuse "$BUNDLE 不是离线安装包（没有 BUNDLE.json 或 SHA256SUMS）" \
            "$BUNDLE is not an install bundle (no BUNDLE.json or SHA256SUMS)"
    fi
    BUNDLE=$(cd "$BUNDLE" && pwd)
    [[ $BUNDLE != *[[:space:]]* ]] ||
        refuse "离线安装包的路径不能含空格：$BUNDLE" "the bundle's path must not hold blanks: $BUNDLE"
    local want have
    want=$(sed -n 's/.*"arch": *"\([a-z0-9]*\)".*/\1/p' "$BUNDLE/BUNDLE.json")
    have=$(dpkg --print-architecture)
    [ "$want" = "$have" ] ||
        refuse "离线安装包是给 $want 的，本机是 $have：请用 make pi-bundle ARCH=$have 制作" \
            "the bundle is for $want, this machine is $have: build one with make pi-bundle ARCH=$have"
    refuse_downgrade "$BUNDLE/release/release.json"
    echo "checking the bundle $BUNDLE ($want)"
    (cd "$BUNDLE" && sha256sum --check --strict --quiet SHA256SUMS) >"$WORK/sums" 2>&1 ||
        refuse "离线安装包已损坏或不完整，未做任何更改：$(head -c 400 "$WORK/sums")" \
            "the bundle is damaged or incomplete, nothing was changed: $(head -c 400 "$WORK/sums")"
}

# Never back to a release older than the running one (an update may have moved it on, and
# its database may have migrations the older one does not know).
refuse_downgrade() { # release.json
    local running
    [ -x "$ROOT$VENV/bin/python" ] && [ -f "$ROOT$VENV/.clinic-release.json" ] || return 0
    running=$("$ROOT$VENV/bin/python" - "$ROOT$VENV/.clinic-release.json" "$1" <<'EOF' || true
import json, sys
from packaging.version import Version

running, offered = (json.load(open(path))["manifest"]["version"] for path in sys.argv[1:])
if Version(offered) < Version(running):
    print(running, offered)
EOF
)
    [ -z "$running" ] ||
        refuse "本机运行的软件版本 ${running% *} 比安装包里的 ${running#* } 新，未做任何更改：请用新的安装包" \
            "this machine runs ${running% *}, newer than the bundle's ${running#* }: nothing changed, use a newer bundle"
}

# ---- Debian packages -----------------------------------------------------------------------

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }

installed_list() { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" { print $2 }' | LC_ALL=C sort; }

# apt: from the bundle's repository only (its own lists: the machine's are left alone),
# or from the network.
apt_install() {
    if [ -n "$BUNDLE" ]; then
        if [ ! -d "$WORK/apt/lists" ]; then
            mkdir -p "$WORK/apt/lists/partial"
            echo "deb [trusted=yes] file:$BUNDLE/debs ./" >"$WORK/apt/sources.list"
            bundle_apt update
        fi
        DEBIAN_FRONTEND=noninteractive bundle_apt install -y --no-install-recommends "$@"
    else
        [ -e "$WORK/apt-updated" ] || apt-get -q update
        touch "$WORK/apt-updated"
        DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends "$@"
    fi
}
bundle_apt() {
    apt-get -q -o Dir::Etc::SourceList="$WORK/apt/sources.list" \
        -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$WORK/apt/lists" \
        -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root "$@"
}

install_packages() {
    local wanted=("${RUN_PACKAGES[@]}") missing=() package
    if [ "$DO_APT" = 0 ]; then
        echo "skipped: Debian packages (${wanted[*]})"
        return 0
    fi
    # Raspberry Pi OS once named Chromium chromium-browser: kept where installed.
    if installed chromium-browser && ! installed chromium; then
        wanted=("${wanted[@]/#chromium/chromium-browser}")
    fi
    for package in "${wanted[@]}"; do
        installed "$package" || missing+=("$package")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    apt_install "${missing[@]}"
    changed packages "installed ${missing[*]}"
}

# pyscard's wheel is built once from its locked source (clinic-install-release): the
# compiler and headers come for that build only and go again. What this script installed
# for it is listed in $STATE/build-packages until it is purged, so an interrupted run
# purges it next time.
source_wheels_missing() { # release.json
    local sha
    for sha in $(python3 -c 'import json, sys
for f in json.load(open(sys.argv[1]))["manifest"]["files"]:
    if f["role"] == "source": print(f["sha256"])' "$1"); do
        compgen -G "$WHEELS/$sha/*.whl" >/dev/null || return 0
    done
    return 1
}

add_build_packages() {
    local missing=() package status=0
    [ "$DO_APT" = 1 ] || return 0
    for package in "${BUILD_PACKAGES[@]}"; do
        installed "$package" || missing+=("$package")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    mkdir -p "$STATE"
    installed_list >"$WORK/before"
    apt_install "${missing[@]}" || status=$?
    # Recorded even when apt failed halfway: what came in goes again.
    installed_list >"$WORK/after"
    LC_ALL=C comm -13 "$WORK/before" "$WORK/after" >>"$STATE/build-packages"
    [ "$status" = 0 ] || exit "$status"
    changed packages "installed ${missing[*]} (to build pyscard, for this run only)"
}

purge_build_packages() {
    if [ "$DO_APT" = 0 ] || [ ! -s "$STATE/build-packages" ]; then
        return 0
    fi
    local packages
    mapfile -t packages < <(LC_ALL=C sort -u "$STATE/build-packages")
    DEBIAN_FRONTEND=noninteractive apt-get -q purge -y "${packages[@]}"
    rm -f "$STATE/build-packages"
    changed packages "purged ${packages[*]} (the build tools, no longer needed)"
}

# ---- users and directories -----------------------------------------------------------------

user_id() { awk -F: -v name="$1" '$1 == name { print $3; exit }' "$ROOT/etc/passwd"; }
group_id() { awk -F: -v name="$1" '$1 == name { print $3; exit }' "$ROOT/etc/group"; }
in_group() { # group user
    awk -F: -v group="$1" -v user="$2" '
        $1 == group { n = split($4, members, ","); for (i = 1; i <= n; i++) if (members[i] == user) found = 1 }
        END { exit !found }' "$ROOT/etc/group"
}

ensure_user() { # name home comment supplementary-groups...
    local name=$1 home=$2 comment=$3 group
    shift 3
    local at_root=()
    [ -z "$ROOT" ] || at_root=(--root "$ROOT")
    if [ -z "$(user_id "$name")" ]; then
        useradd "${at_root[@]+"${at_root[@]}"}" --system --user-group --no-create-home \
            --home-dir "$home" --shell /usr/sbin/nologin --comment "$comment" "$name"
        changed "user:$name" "created the user $name"
    fi
    for group in "$@"; do
        [ -n "$(group_id "$group")" ] || continue # not on this system (e.g. render)
        in_group "$group" "$name" && continue
        usermod "${at_root[@]+"${at_root[@]}"}" --append --groups "$group" "$name"
        changed "user:$name" "added $name to the group $group"
    done
}

numeric_owner() { # user group -> uid:gid
    local uid gid
    if [ "$1" = root ]; then uid=0; else uid=$(user_id "$1"); fi
    if [ "$2" = root ]; then gid=0; else gid=$(group_id "$2"); fi
    if [ -z "$uid" ] || [ -z "$gid" ]; then
        die "no user $1 or group $2 in $ROOT/etc"
    fi
    echo "$uid:$gid"
}

ensure_owner_mode() { # path (below ROOT) mode user group
    local path="$ROOT$1" owner
    owner=$(numeric_owner "$3" "$4")
    if [ "$(stat -c %a "$path")" != "${2#0}" ]; then
        chmod "$2" "$path"
        changed "$1" "mode $2 on $1"
    fi
    if [ "$(stat -c %u:%g "$path")" != "$owner" ]; then
        chown "$owner" "$path"
        changed "$1" "owner $3:$4 on $1"
    fi
}

ensure_dir() { # path mode user group
    if [ ! -d "$ROOT$1" ]; then
        mkdir -p "$(dirname "$ROOT$1")"
        mkdir -m "$2" "$ROOT$1"
        changed "$1" "created $1"
    fi
    ensure_owner_mode "$@"
}

# ---- files ---------------------------------------------------------------------------------

install_file() { # source target mode: the target becomes a copy of source (root-owned)
    local source=$1 target="$ROOT$2" tmp
    if [ -f "$target" ] && [ ! -L "$target" ] && cmp -s "$source" "$target"; then
        ensure_owner_mode "$2" "$3" root root
        return 0
    fi
    mkdir -p "$(dirname "$target")"
    tmp=$(mktemp "$(dirname "$target")/.install.XXXXXX")
    cat "$source" >"$tmp"
    chmod "$3" "$tmp"
    mv -f "$tmp" "$target"
    changed "$2" "wrote $2"
}

install_once() { # source target mode: a file the admin edits: written only when missing
    [ -e "$ROOT$2" ] || install_file "$@"
}

# The value of KEY=value in a shell-style config file (quotes and blanks dropped).
conf_value() { # key file
    sed -n "s/^[[:space:]]*$1[[:space:]]*=//p" "$2" | tail -n 1 | tr -d "\"'[:space:]"
}

udev_rule() { # device-name usb-id serial
    local name=$1 id=$2 serial=$3 match
    local key="${name^^}_USB_ID"
    if [ -z "$id" ]; then
        echo "# /dev/clinic-$name: not configured ($key is empty in /etc/clinic/devices.conf)"
        return 0
    fi
    id=$(echo "$id" | tr 'A-F' 'a-f')
    [[ $id =~ ^[0-9a-f]{4}:[0-9a-f]{4}$ ]] ||
        die "$key=$id in /etc/clinic/devices.conf: write VENDOR:PRODUCT, e.g. 1a86:7523"
    [[ -z $serial || $serial =~ ^[A-Za-z0-9._-]+$ ]] ||
        die "${name^^}_SERIAL=$serial in /etc/clinic/devices.conf: letters, digits, . _ - only"
    match="SUBSYSTEM==\"tty\", ATTRS{idVendor}==\"${id%%:*}\", ATTRS{idProduct}==\"${id##*:}\""
    [ -z "$serial" ] || match+=", ATTRS{serial}==\"$serial\""
    echo "# /dev/clinic-$name"
    echo "$match, SYMLINK+=\"clinic-$name\", GROUP=\"$SERVICE_USER\", MODE=\"0660\"," \
        "ENV{ID_MM_DEVICE_IGNORE}=\"1\""
}

write_udev_rules() {
    local conf="$ROOT/etc/clinic/devices.conf"
    {
        echo "# Generated by deploy/raspberry-pi/install.sh from /etc/clinic/devices.conf:"
        echo "# edit that file and run install.sh again. Stable names for the USB serial QR"
        echo "# scanner and receipt printer, usable by the clinic group only; ModemManager,"
        echo "# where installed, leaves them alone."
        udev_rule scanner "$(conf_value SCANNER_USB_ID "$conf")" "$(conf_value SCANNER_SERIAL "$conf")"
        udev_rule printer "$(conf_value PRINTER_USB_ID "$conf")" "$(conf_value PRINTER_SERIAL "$conf")"
    } >"$WORK/udev.rules"
    install_file "$WORK/udev.rules" /etc/udev/rules.d/99-clinic-devices.rules 0644
}

# ---- the software --------------------------------------------------------------------------

# Without a bundle: a release built from this checkout (its hashed lock, from PyPI) by a
# throwaway venv, only when the checkout differs from what was installed last.
source_fingerprint() {
    (
        cd "$SOURCE"
        find pyproject.toml requirements/runtime.txt edge drivers web_ui sync -type f \
            ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 |
            LC_ALL=C sort -z | xargs -0 sha256sum
    ) | sha256sum | cut -d' ' -f1
}

build_release_from_checkout() { # out
    echo "building a release from $SOURCE (network: PyPI)"
    python3 -m venv "$WORK/build"
    awk '/^[^[:space:]#]/ { skip = ($1 ~ /^pyscard==/) } !skip' "$SOURCE/requirements/runtime.txt" \
        >"$WORK/build-lock.txt"
    "$WORK/build/bin/python" -m pip install -q --require-hashes --no-deps -r "$WORK/build-lock.txt"
    # The checkout's code run in place (PYTHONPATH): nothing is written into the checkout.
    PYTHONPATH=$SOURCE "$WORK/build/bin/python" -c 'from edge.console import main; main()' \
        release build --source "$SOURCE" --out "$1" \
        --arch "$(python3 -c 'import platform; print(platform.machine())')"
}

# A release by what is installed from it (its version and files), not when it was built.
release_files() {
    python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))["manifest"]
print(json.dumps([m["version"], m["files"]], sort_keys=True))' "$1" 2>/dev/null || true
}

venv_has() { # venv release.json: complete, that release's files, and clinic runs
    [ -x "$1/bin/clinic" ] && [ -f "$1/.clinic-release.json" ] &&
        [ "$(release_files "$1/.clinic-release.json")" = "$(release_files "$2")" ] &&
        "$1/bin/clinic" --version >/dev/null 2>&1
}

switch_venv() { # target: /opt/clinic/venv -> target, /opt/clinic/previous -> the one before
    local old=""
    [ ! -L "$VENV" ] || old=$(readlink "$VENV")
    if [ -e "$VENV" ] && [ ! -L "$VENV" ]; then
        # A venv of an older install.sh (a real folder): replaced by the link.
        rm -rf "$VENV.old"
        mv "$VENV" "$VENV.old"
    fi
    ln -sfn "$1" "$OPT/.venv.new"
    mv -T "$OPT/.venv.new" "$VENV"
    rm -rf "$VENV.old"
    if [ -n "$old" ] && [ "$old" != "$1" ]; then
        ln -sfn "$old" "$OPT/.previous.new"
        mv -T "$OPT/.previous.new" "$OPT/previous"
    fi
}

install_software() {
    if [ "$DO_VENV" = 0 ]; then
        echo "skipped: the software in $VENV (--no-venv)"
        return 0
    fi
    # Not while the update service switches releases (it would undo this install).
    [ ! -e "$STATE/switch.json" ] ||
        die "一次软件更新正在切换、尚未确认：几分钟后再运行 / a software update's switch is not confirmed yet: run again in a few minutes"
    exec 9>>"$STATE/apply.lock"
    flock -n 9 ||
        die "软件更新正在进行：几分钟后再运行 / a software update is running: run again in a few minutes"
    local release fingerprint="" version target
    if [ -n "$BUNDLE" ]; then
        release=$BUNDLE/release
    else
        fingerprint=$(source_fingerprint)
        if [ -L "$VENV" ] && [ "$(cat "$STATE/source-sha256" 2>/dev/null || true)" = "$fingerprint" ] &&
            venv_has "$VENV" "$VENV/.clinic-release.json"; then
            purge_build_packages
            return 0
        fi
        release=$WORK/release
        build_release_from_checkout "$release"
        refuse_downgrade "$release/release.json"
    fi
    version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifest"]["version"])' \
        "$release/release.json")
    target=$OPT/releases/$version/venv
    if ! venv_has "$target" "$release/release.json"; then
        if source_wheels_missing "$release/release.json"; then
            add_build_packages
        fi
        if [ "$(readlink -f "$VENV" 2>/dev/null || true)" = "$target" ]; then
            # The same version rebuilt: replaced in place, the terminal stopped meanwhile.
            [ "$DO_SYSTEMCTL" = 0 ] || systemctl stop clinic-terminal.service
            rm -f "$VENV"
        fi
        bash "$HERE/bin/clinic-install-release" "$release" "$target" # bash: a stick may drop the x bit
        changed venv "installed release $version in $target"
    fi
    if [ "$(readlink "$VENV" 2>/dev/null || true)" != "$target" ]; then
        switch_venv "$target"
        changed venv "switched $VENV to release $version"
    fi
    if [ -n "$fingerprint" ] && [ "$(cat "$STATE/source-sha256" 2>/dev/null || true)" != "$fingerprint" ]; then
        mkdir -p "$STATE"
        echo "$fingerprint" >"$STATE/source-sha256"
    fi
    purge_build_packages
}

# ---- systemd -------------------------------------------------------------------------------

at_root_systemctl() {
    if [ -n "$ROOT" ]; then
        systemctl --root="$ROOT" "$@"
    elif [ "$DO_SYSTEMCTL" = 0 ]; then
        systemctl --no-reload "$@"
    else
        systemctl "$@"
    fi
}

unit_exists() {
    local dir
    for dir in /etc/systemd/system /usr/lib/systemd/system /lib/systemd/system; do
        [ -e "$ROOT$dir/$1" ] && return 0
    done
    return 1
}

enable_unit() {
    if ! unit_exists "$1"; then
        echo "skipped: enabling $1 (no such unit here)"
        return 0
    fi
    [ "$(at_root_systemctl is-enabled "$1" 2>/dev/null || true)" != enabled ] || return 0
    at_root_systemctl enable "$1"
    changed "enabled:$1" "enabled $1"
}

# What a reload or restart applied, by hash, in $STATE: written only once it succeeded, so a
# step that failed is done again by the next run.
hash_of() { { cat "$@" 2>/dev/null || true; } | sha256sum | cut -d' ' -f1; }
stamp_differs() { [ "$(cat "$ROOT$STATE/$1" 2>/dev/null || true)" != "$2" ]; }
write_stamp() {
    mkdir -p "$ROOT$STATE"
    echo "$2" >"$ROOT$STATE/.$1.new"
    mv -f "$ROOT$STATE/.$1.new" "$ROOT$STATE/$1"
}

apply_to_running_system() {
    if [ "$DO_SYSTEMCTL" = 0 ]; then
        echo "skipped: reloading and starting services (--no-systemctl)"
        return 0
    fi
    local unit stale=0 udev journald terminal
    for unit in "${UNITS[@]}"; do
        [ "$(systemctl show -p NeedDaemonReload --value "$unit" 2>/dev/null || true)" != yes ] ||
            stale=1
    done
    if [ "$stale" = 1 ] || was_changed '/etc/systemd/system/*' || was_changed 'enabled:*'; then
        systemctl daemon-reload
        changed daemon-reload "reloaded systemd's units"
    fi
    udev=$(hash_of "$ROOT/etc/udev/rules.d/99-clinic-devices.rules" "$ROOT/etc/group")
    if ! udevadm control --ping >/dev/null 2>&1; then
        echo "not reloaded: udev rules (udevd is not running here; it reads them when it starts)"
    elif stamp_differs udev-rules "$udev"; then
        udevadm control --reload-rules
        udevadm trigger --subsystem-match=tty --action=add
        write_stamp udev-rules "$udev"
        changed udev "reloaded the udev rules"
    fi
    journald=$(hash_of "$ROOT"/etc/systemd/journald.conf.d/*.conf)
    if stamp_differs journald "$journald"; then
        systemctl restart systemd-journald
        write_stamp journald "$journald"
        changed journald "restarted systemd-journald (its settings)"
    fi
    systemctl start pcscd.socket clinic-healthcheck.timer clinic-backup.timer \
        clinic-update.path clinic-update.timer
    terminal="$(readlink "$ROOT$VENV" || true) $(hash_of "$ROOT/etc/clinic/clinic.env" \
        "$ROOT/etc/systemd/system/clinic-terminal.service")"
    if [ ! -e "$ROOT$DATA_DIR/clinic.db" ]; then
        echo "not started: clinic-terminal (no device data yet: see the README's walkthrough)"
    elif stamp_differs terminal "$terminal"; then
        systemctl restart clinic-terminal.service
        write_stamp terminal "$terminal"
        changed terminal "restarted clinic-terminal (its software or settings)"
    else
        systemctl start clinic-terminal.service
    fi
    # The kiosk takes over tty1 (and whoever is logged in there): it starts at the next
    # boot, or now with: sudo systemctl start clinic-kiosk
}

# ---- the read-only root and the clock (README: Read-only root, The clock) -------------------

# raspi-config's overlay writes overlayroot=tmpfs, whose default recurse=1 puts the data
# partition in RAM too: add recurse=0 (what `clinic-overlay enable` writes), and warn when
# the overlay is on while /var/lib/clinic is not a mount of its own.
check_overlay_config() {
    local cmdline said
    for cmdline in "$ROOT/boot/firmware/cmdline.txt" "$ROOT/boot/cmdline.txt" ""; do
        [ -z "$cmdline" ] || [ ! -f "$cmdline" ] || break
    done
    [ -n "$cmdline" ] || return 0
    said=$(CLINIC_CMDLINE="$cmdline" CLINIC_RASPI_CONFIG="" "$HERE/bin/clinic-overlay" repair)
    [ -z "$said" ] || changed "${cmdline#"$ROOT"}" "$said"
    if [ -z "$ROOT" ] && ! CLINIC_CMDLINE="$cmdline" "$HERE/bin/clinic-overlay" status >/dev/null; then
        echo "install.sh: 警告：开启只读根分区后 $DATA_DIR 的写入会进内存；见 sudo clinic-overlay status" >&2
        echo "install.sh: warning: under the read-only root $DATA_DIR would be written to RAM; see sudo clinic-overlay status" >&2
    fi
}

# fake-hwclock's saved time on the data partition (/etc/default/fake-hwclock), in a folder
# of root's there, seeded from the time saved so far; saved every 15 minutes.
# A terminal enrolled before root recorded the county key for releases: say how to record
# it (the admin checks the fingerprint; nothing here trusts clinic.db by itself).
trust_county_key() {
    if [ "$DO_VENV" = 0 ] || [ -e /etc/clinic/county-release.pub ] ||
        [ ! -e "$DATA_DIR/clinic.db" ]; then
        return 0
    fi
    echo "软件更新需要 root 记下县级公钥：sudo clinic release trust --fingerprint 县里给的指纹"
    echo "software updates wait for root to record the county key:" \
        "sudo clinic release trust --fingerprint FINGERPRINT-FROM-THE-COUNTY"
}

check_clock() {
    local saved="$DATA_DIR/.system/fake-hwclock.data"
    ensure_dir "$DATA_DIR/.system" 0700 root root
    if [ ! -e "$ROOT$saved" ] && [ -f "$ROOT/etc/fake-hwclock.data" ]; then
        install_file "$ROOT/etc/fake-hwclock.data" "$saved" 0600
    fi
    enable_unit clinic-clock-save.timer
}

# ---- the installation ------------------------------------------------------------------------

check_bundle
install_packages

ensure_user "$SERVICE_USER" "$DATA_DIR" "Clinic settlement terminal" dialout
ensure_user "$KIOSK_USER" "/home/$KIOSK_USER" "Clinic terminal kiosk" video render input
ensure_dir "$DATA_DIR" 0700 "$SERVICE_USER" "$SERVICE_USER"
ensure_dir "/home/$KIOSK_USER" 0700 "$KIOSK_USER" "$KIOSK_USER"
ensure_dir /opt/clinic 0755 root root
ensure_dir /opt/clinic/bin 0755 root root
ensure_dir /opt/clinic/doc 0755 root root
ensure_dir /opt/clinic/releases 0755 root root
ensure_dir /opt/clinic/wheels 0755 root root
ensure_dir /opt/clinic/state 0755 root root
ensure_dir /etc/clinic 0755 root root

install_software

install_file "$HERE/bin/clinic" /usr/local/bin/clinic 0755
install_file "$HERE/bin/clinic-overlay" /usr/local/sbin/clinic-overlay 0755
for script in clinic-healthcheck clinic-nightly-backup clinic-kiosk-browser \
    clinic-install-release clinic-update; do
    install_file "$HERE/bin/$script" "/opt/clinic/bin/$script" 0755
done
install_file "$HERE/README.md" /opt/clinic/doc/README.md 0644
install_once "$HERE/config/clinic.env" /etc/clinic/clinic.env 0644
install_once "$HERE/config/devices.conf" /etc/clinic/devices.conf 0644
write_udev_rules
install_file "$HERE/config/journald-clinic.conf" /etc/systemd/journald.conf.d/clinic.conf 0644
install_file "$HERE/config/pam-clinic-kiosk" /etc/pam.d/clinic-kiosk 0644
install_file "$HERE/config/polkit-clinic-pcscd.rules" \
    /etc/polkit-1/rules.d/50-clinic-pcscd.rules 0644
for unit in "${UNITS[@]}"; do
    install_file "$HERE/systemd/$unit" "/etc/systemd/system/$unit" 0644
done
install_file "$HERE/config/fake-hwclock" /etc/default/fake-hwclock 0644
install_file "$HERE/config/fake-hwclock-clinic.conf" \
    /etc/systemd/system/fake-hwclock.service.d/clinic.conf 0644
install_file "$HERE/systemd/clinic-clock-save.service" \
    /etc/systemd/system/clinic-clock-save.service 0644
install_file "$HERE/systemd/clinic-clock-save.timer" /etc/systemd/system/clinic-clock-save.timer 0644
for unit in "${ENABLE[@]}"; do
    enable_unit "$unit"
done
check_clock
check_overlay_config
trust_county_key

apply_to_running_system

if [ "$CHANGES" = 0 ]; then
    echo "install.sh: nothing to change${ROOT:+ in $ROOT}"
else
    echo "install.sh: $CHANGES change(s)${ROOT:+ in $ROOT}"
fi
