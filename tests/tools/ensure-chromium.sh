#!/usr/bin/env bash
# Makes sure headless Chromium and its WebDriver (chromedriver) are installed for the console's
# browser tests (tests/tests/console.rs), at MIN_VERSION or newer, from Debian's `chromium` and
# `chromium-driver` packages in whatever revision the archive carries now (Debian replaces
# revisions, so none is pinned). Installs them with apt-get when missing or too old, refreshing
# the package lists once if the install fails with the current ones. The tests find the programs
# through $HOOKD_CHROMIUM and $HOOKD_CHROMEDRIVER (the Makefile sets both).
#
# Usage: ensure-chromium.sh MIN_VERSION CHROMIUM CHROMEDRIVER
set -euo pipefail
source "$(dirname "$0")/apt.sh"

min_version=$1 chromium=$2 chromedriver=$3

# "Chromium 156.0.8078.114 built on Debian ..." / "ChromeDriver 156.0.8078.114 (...)"
version_of() { "$1" --version 2>/dev/null | sed -n 's/^[A-Za-z]* \([0-9][0-9.]*\).*/\1/p' | head -1; }

usable() {
    local v
    [[ -x $chromium && -x $chromedriver ]] || return 1
    v=$(version_of "$chromium"); [[ -n $v ]] && version_at_least "$v" "$min_version" || return 1
    v=$(version_of "$chromedriver"); [[ -n $v ]] && version_at_least "$v" "$min_version"
}

if ! usable; then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        echo "ensure-chromium.sh: Chromium and chromedriver $min_version or newer are needed at $chromium and $chromedriver; install Debian's chromium and chromium-driver packages (as root: apt-get install chromium chromium-driver)" >&2
        exit 1
    fi
    echo "installing Debian's chromium and chromium-driver packages"
    if ! DEBIAN_FRONTEND=noninteractive apt_retry apt-get install -y -qq --no-install-recommends chromium chromium-driver; then
        echo "ensure-chromium.sh: installing Debian's chromium and chromium-driver failed" >&2
        exit 1
    fi
    # A stale list may offer an old revision: upgrade once from fresh lists before giving up.
    if ! usable; then
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
    fi
    if ! usable; then
        echo "ensure-chromium.sh: Chromium '$(version_of "$chromium")' / chromedriver '$(version_of "$chromedriver")' at $chromium, $chromedriver: need $min_version or newer" >&2
        exit 1
    fi
fi
echo "Chromium $(version_of "$chromium"), chromedriver $(version_of "$chromedriver")"
