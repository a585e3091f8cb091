#!/usr/bin/env bash
# Installs Debian packages so that a mirror that fails in part stops as little as it can:
#
#   scripts/apt_install.sh [--record FILE] PACKAGE... [--optional PACKAGE...]
#
# - `apt-get update` is tried three times; if it still fails (one index of a mirror that is being
#   synced, say), the reason is printed and the install goes on with the indexes that did come.
# - All packages are installed in one transaction; if apt refuses it, each package is installed
#   on its own, so one that cannot be had does not keep out the others.
# - At the end, each package that could not be installed is named once, with apt's reason. The
#   exit status is 1 if a required one is among them; optional ones (after --optional) are only
#   reported, and written to FILE as `PACKAGE<TAB>REASON` lines for the scripts and tests that
#   must say what did not run for want of them.
#
# OXTUN_APT_GET names another apt-get (the tests give a stand-in); OXTUN_APT_RETRY_SECONDS is the
# pause between tries of the update (default 5).
set -euo pipefail

record=""
required=()
optional=()
into=required
while [ $# -gt 0 ]; do
    case $1 in
    --record) record=$2; shift 2 ;;
    --optional) into=optional; shift ;;
    *) if [ $into = required ]; then required+=("$1"); else optional+=("$1"); fi; shift ;;
    esac
done
packages=("${required[@]}" "${optional[@]}")
[ ${#packages[@]} -gt 0 ] || exit 0

apt_get() {
    if [ -n "${OXTUN_APT_GET:-}" ]; then
        "$OXTUN_APT_GET" "$@"
    elif [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get "$@"
    else
        sudo DEBIAN_FRONTEND=noninteractive apt-get "$@"
    fi
}

# apt's own words for why a command failed, on one line: its error lines and the first two unmet
# dependencies (which apt prints only without -qq).
reason() {
    {
        grep -E '^E: ' "$1" | grep -v 'Some index files failed to download' || true
        grep -E ' : Depends: ' "$1" | head -n 2 || true
    } | sed -E 's/^ +//' | paste -sd ';' | sed 's/;/; /g'
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT

updated=""
for attempt in 1 2 3; do
    if apt_get update -qq >"$log" 2>&1; then
        updated=yes
        break
    fi
    [ $attempt = 3 ] || sleep "${OXTUN_APT_RETRY_SECONDS:-5}"
done
update_failure=""
if [ -z "$updated" ]; then
    update_failure=$(reason "$log")
    echo "setup: apt-get update failed three times ($update_failure); installing from the indexes that did come" >&2
fi

failed=()
if ! apt_get install -y -qq "${packages[@]}" >"$log" 2>&1; then
    for package in "${packages[@]}"; do
        if ! apt_get install -y "$package" >"$log" 2>&1; then
            why=$(reason "$log")
            [ -z "$update_failure" ] || why="$why (after a failed apt-get update: $update_failure)"
            failed+=("$package"$'\t'"$why")
        fi
    done
fi

[ -z "$record" ] || : >"$record"
missing_required=0
if [ ${#failed[@]} -gt 0 ]; then
    echo "setup: could not install these packages (apt's reason):" >&2
    for line in "${failed[@]}"; do
        package=${line%%$'\t'*}
        kind=required
        for wanted in "${optional[@]}"; do
            if [ "$wanted" = "$package" ]; then kind=optional; fi
        done
        echo "  $package ($kind): ${line#*$'\t'}" >&2
        if [ $kind = required ]; then
            missing_required=1
        elif [ -n "$record" ]; then
            echo "$line" >>"$record"
        fi
    done
fi
exit $missing_required
