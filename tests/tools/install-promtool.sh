#!/usr/bin/env bash
# Installs promtool (for `promtool check metrics` in the tests) as DEST, from Debian's
# `prometheus` package in whatever revision the archive carries now, unpacked without
# installing the package. Refuses a promtool older than MIN_VERSION.
#
# Usage: install-promtool.sh DEST MIN_VERSION
set -euo pipefail
source "$(dirname "$0")/apt.sh"

dest=$1 min_version=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

if ! apt_retry apt-get download prometheus; then
    echo "install-promtool.sh: cannot download Debian's prometheus package for promtool" >&2
    exit 1
fi
deb=$(ls prometheus_*.deb)
package_version=$(dpkg-deb --field "$deb" Version)
dpkg-deb -x "$deb" unpacked
# `promtool --version` prints "promtool, version 2.42.0+ds (branch: …)"
version=$(unpacked/usr/bin/promtool --version 2>&1 | sed -n 's/^promtool, version \([0-9.]*\).*/\1/p' | head -1)
if [[ -z $version ]] || ! version_at_least "$version" "$min_version"; then
    echo "install-promtool.sh: Debian's prometheus $package_version carries promtool '${version:-?}', older than $min_version" >&2
    exit 1
fi
mkdir -p "$(dirname "$dest")"
cp unpacked/usr/bin/promtool "$dest.tmp"
mv "$dest.tmp" "$dest"
echo "promtool $version from Debian's prometheus $package_version"
