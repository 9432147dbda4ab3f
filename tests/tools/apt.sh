# Shared by the install scripts in this folder (sourced, not run): Debian package access that
# survives the archive moving on. Nothing here pins a Debian revision, because Debian replaces
# revisions (a `+b6` rebuild becomes `+deb12u1`) and the old one vanishes from the mirrors; the
# callers check the version they got against the oldest one the project works with instead.

# apt_retry CMD...: run an apt command with the package lists as they are; if it fails, refresh
# the lists once (they may be missing, or name files the mirror no longer has) and run it again.
apt_retry() {
    if "$@" >/dev/null 2>&1; then
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "'$*' failed and refreshing the package lists needs root: run 'apt-get update' as root and try again" >&2
        return 1
    fi
    echo "'$*' failed with the current package lists; refreshing them (apt-get update)" >&2
    apt-get update -qq >/dev/null || return 1
    "$@"
}

# version_at_least HAVE WANT: HAVE >= WANT in Debian's version ordering.
version_at_least() {
    dpkg --compare-versions "$1" ge "$2"
}
