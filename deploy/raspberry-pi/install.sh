#!/bin/bash
# Turn Raspberry Pi OS Bookworm (Lite, 64-bit) into a clinic settlement terminal.
#
#   sudo deploy/raspberry-pi/install.sh [--wheelhouse DIR]
#   sudo deploy/raspberry-pi/install.sh --root SCRATCH   # files only, into SCRATCH (tests)
#
# Idempotent: run it again after updating the checkout or editing /etc/clinic/devices.conf;
# a run with nothing to do changes nothing (not even a file's modification time) and says
# "nothing to change". See README.md next to this script.
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(cd "$HERE/../.." && pwd)

ROOT=""
DO_APT=1
DO_SYSTEMCTL=1
DO_VENV=1
WHEELHOUSE=""

VENV=/opt/clinic/venv
DATA_DIR=/var/lib/clinic
SERVICE_USER=clinic
KIOSK_USER=clinic-kiosk
PACKAGES=(
    python3-venv python3-dev gcc swig libpcsclite-dev # the venv, and pyscard's build
    pcscd libccid                                     # the card reader
    cage fonts-noto-cjk                               # the kiosk (and Chinese text)
    curl sqlite3                                      # health check, admin's tools
)
UNITS=(
    clinic-terminal.service clinic-healthcheck.service clinic-healthcheck.timer
    clinic-backup.service clinic-backup.timer clinic-kiosk.service
    clinic-update.service clinic-update.path clinic-update.timer
)
ENABLE=(pcscd.socket clinic-terminal.service clinic-healthcheck.timer clinic-backup.timer
    clinic-kiosk.service clinic-update.path clinic-update.timer)

usage() {
    cat <<'EOF'
Usage: install.sh [--wheelhouse DIR] [--no-apt] [--no-venv] [--no-systemctl]
       install.sh --root DIR

Installs the clinic terminal on this Raspberry Pi OS Bookworm machine (run as root):
Debian packages, the users clinic and clinic-kiosk, /var/lib/clinic (0700), the software
in /opt/clinic/venv (from this checkout, with the pcsc extra), systemd units, udev rules,
config files; enables the services. Safe to run again: it changes only what differs.
Python packages come from requirements/runtime.txt, hash-checked (install-venv.sh).

  --wheelhouse DIR  install Python packages from DIR only (pip --no-index): offline sites
  --no-apt          do not install Debian packages
  --no-venv         do not (re)install the software into /opt/clinic/venv
  --no-systemctl    do not reload or (re)start services or udev (units are still enabled)
  --root DIR        write every file under DIR instead of /, for tests and image builds;
                    implies --no-apt --no-venv --no-systemctl. DIR/etc/passwd and
                    DIR/etc/group must exist (users are added there with useradd --root).
EOF
}

die() {
    echo "install.sh: $*" >&2
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
        --wheelhouse)
            [ $# -ge 2 ] || die "--wheelhouse needs a directory"
            WHEELHOUSE=$2
            shift
            ;;
        --wheelhouse=*) WHEELHOUSE=${1#--wheelhouse=} ;;
        --no-apt) DO_APT=0 ;;
        --no-venv) DO_VENV=0 ;;
        --no-systemctl) DO_SYSTEMCTL=0 ;;
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
    DO_SYSTEMCTL=0
fi
if [ -n "$WHEELHOUSE" ]; then
    [ -d "$WHEELHOUSE" ] || die "--wheelhouse $WHEELHOUSE: no such directory"
    WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)
fi

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

# ---- Debian packages -----------------------------------------------------------------------

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

browser_package() {
    # Raspberry Pi OS has shipped Chromium as chromium-browser and, lately, as chromium.
    if installed chromium || installed chromium-browser; then
        return 0
    fi
    if apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        echo chromium
    else
        echo chromium-browser
    fi
}

install_packages() {
    if [ "$DO_APT" = 0 ]; then
        echo "skipped: Debian packages (${PACKAGES[*]} chromium)"
        return 0
    fi
    local missing=() package browser
    for package in "${PACKAGES[@]}"; do
        installed "$package" || missing+=("$package")
    done
    browser=$(browser_package)
    [ -z "$browser" ] || missing+=("$browser")
    [ ${#missing[@]} -gt 0 ] || return 0
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    changed packages "installed ${missing[*]}"
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

source_fingerprint() {
    (
        cd "$SOURCE"
        find pyproject.toml requirements/runtime.txt deploy/raspberry-pi/install-venv.sh \
            edge drivers web_ui sync -type f \
            ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 |
            LC_ALL=C sort -z | xargs -0 sha256sum
    ) | sha256sum | cut -d' ' -f1
}

install_venv() {
    if [ "$DO_VENV" = 0 ]; then
        echo "skipped: the software in $VENV (--no-venv)"
        return 0
    fi
    local stamp="$VENV/.clinic-source-sha256" want wheelhouse=()
    want=$(source_fingerprint)
    if [ -x "$VENV/bin/clinic" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
        return 0
    fi
    # Every package from requirements/runtime.txt, checked against its hashes.
    [ -z "$WHEELHOUSE" ] || wheelhouse=(--wheelhouse "$WHEELHOUSE")
    "$HERE/install-venv.sh" "$VENV" "${wheelhouse[@]+"${wheelhouse[@]}"}"
    echo "$want" >"$stamp"
    changed venv "installed the software from $SOURCE into $VENV"
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

apply_to_running_system() {
    if [ "$DO_SYSTEMCTL" = 0 ]; then
        echo "skipped: reloading and starting services (--no-systemctl)"
        return 0
    fi
    if was_changed '/etc/systemd/system/*' || was_changed 'enabled:*'; then
        systemctl daemon-reload
    fi
    if was_changed /etc/udev/rules.d/99-clinic-devices.rules || was_changed 'user:*'; then
        udevadm control --reload-rules
        udevadm trigger --subsystem-match=tty --action=add
    fi
    if was_changed /etc/systemd/journald.conf.d/clinic.conf; then
        systemctl restart systemd-journald
    fi
    systemctl start pcscd.socket clinic-healthcheck.timer clinic-backup.timer
    if [ ! -e "$DATA_DIR/clinic.db" ]; then
        echo "not started: clinic-terminal (no device data yet: see the README's walkthrough)"
    elif was_changed venv || was_changed /etc/systemd/system/clinic-terminal.service; then
        systemctl restart clinic-terminal.service
    else
        systemctl start clinic-terminal.service
    fi
    # The kiosk takes over tty1 (and whoever is logged in there): it starts at the next
    # boot, or now with: sudo systemctl start clinic-kiosk
}

# ---- the installation ------------------------------------------------------------------------

install_packages

ensure_user "$SERVICE_USER" "$DATA_DIR" "Clinic settlement terminal" dialout
ensure_user "$KIOSK_USER" "/home/$KIOSK_USER" "Clinic terminal kiosk" video render input
ensure_dir "$DATA_DIR" 0700 "$SERVICE_USER" "$SERVICE_USER"
ensure_dir "/home/$KIOSK_USER" 0700 "$KIOSK_USER" "$KIOSK_USER"
ensure_dir /opt/clinic 0755 root root
ensure_dir /opt/clinic/bin 0755 root root
ensure_dir /opt/clinic/doc 0755 root root
ensure_dir /etc/clinic 0755 root root

install_venv

install_file "$HERE/bin/clinic" /usr/local/bin/clinic 0755
for script in clinic-healthcheck clinic-nightly-backup clinic-kiosk-browser clinic-update; do
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
for unit in "${ENABLE[@]}"; do
    enable_unit "$unit"
done

apply_to_running_system

if [ "$CHANGES" = 0 ]; then
    echo "install.sh: nothing to change${ROOT:+ in $ROOT}"
else
    echo "install.sh: $CHANGES change(s)${ROOT:+ in $ROOT}"
fi
