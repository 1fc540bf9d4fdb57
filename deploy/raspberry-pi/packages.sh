# shellcheck shell=bash
# The Debian packages of a clinic terminal, for install.sh and build-bundle.sh (sourced).
# shellcheck disable=SC2034 # used by the scripts that source this file

# What the terminal runs on: installed with --no-install-recommends, nothing else comes.
RUN_PACKAGES=(
    python3-venv                      # the release venvs
    pcscd libccid                     # the card reader
    cage xwayland chromium            # the kiosk (Debian's cage 0.1.4 needs /usr/bin/Xwayland)
    fonts-wqy-microhei                # Chinese text: 1.6 MB (fonts-noto-cjk: 56 MB)
    curl sqlite3 ca-certificates      # health check, admin's tools, TLS to the county hub
    fake-hwclock                      # a saved clock at boot (a Pi has no RTC)
)
# Only to build pyscard's wheel once from its locked source (no Linux wheel): installed
# when /opt/clinic/wheels lacks it, and purged again right after.
BUILD_PACKAGES=(gcc swig python3-dev libpcsclite-dev)
