#!/usr/bin/env bash
# Makes sure the PostgreSQL server programs the Postgres tests start (initdb, pg_ctl, psql; see
# crates/hookd-testpg) are on this machine, at MIN_MAJOR or newer, found where the tests look:
# $HOOKD_PG_BIN, else the newest /usr/lib/postgresql/<major>/bin, else PATH. When none is found
# and this runs as root, Debian's `postgresql` package is installed (whatever version the
# archive carries; it also creates the `postgres` user the tests run the server as).
#
# Usage: ensure-postgres.sh MIN_MAJOR
set -euo pipefail
source "$(dirname "$0")/apt.sh"

min_major=$1

complete() { [[ -x $1/initdb && -x $1/pg_ctl && -x $1/psql ]]; }

find_bin() {
    if [[ -n ${HOOKD_PG_BIN:-} ]]; then
        if complete "$HOOKD_PG_BIN"; then echo "$HOOKD_PG_BIN"; fi
        return 0
    fi
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if complete "$dir"; then echo "$dir"; return 0; fi
    done
    dir=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
    if complete "$dir"; then echo "$dir"; fi
    return 0
}

bin=$(find_bin)
if [[ -z $bin ]]; then
    if [[ -n ${HOOKD_PG_BIN:-} ]]; then
        echo "ensure-postgres.sh: HOOKD_PG_BIN=$HOOKD_PG_BIN lacks initdb, pg_ctl or psql" >&2
        exit 1
    fi
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        echo "ensure-postgres.sh: PostgreSQL (initdb, pg_ctl, psql) is not installed; install PostgreSQL $min_major or newer, or set HOOKD_PG_BIN to its bin folder" >&2
        exit 1
    fi
    echo "PostgreSQL is not installed; installing Debian's postgresql package"
    if ! DEBIAN_FRONTEND=noninteractive apt_retry apt-get install -y -qq --no-install-recommends postgresql; then
        echo "ensure-postgres.sh: installing Debian's postgresql package failed" >&2
        exit 1
    fi
    bin=$(find_bin)
    [[ -n $bin ]] || { echo "ensure-postgres.sh: postgresql installed, but initdb is still not found" >&2; exit 1; }
fi

# `initdb --version` prints "initdb (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
version=$("$bin/initdb" --version | sed -n 's/.*(PostgreSQL) \([0-9.]*\).*/\1/p')
if [[ -z $version ]] || ! version_at_least "$version" "$min_major"; then
    echo "ensure-postgres.sh: $bin has PostgreSQL '${version:-?}', older than $min_major" >&2
    exit 1
fi
if [[ $(id -u) -eq 0 ]] && ! id -u postgres >/dev/null 2>&1; then
    echo "ensure-postgres.sh: the tests run as root, so PostgreSQL runs as the 'postgres' user, which does not exist; install Debian's postgresql package or run the tests as another user" >&2
    exit 1
fi
echo "PostgreSQL $version in $bin"
