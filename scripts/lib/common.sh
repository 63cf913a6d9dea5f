# shellcheck shell=bash
# Shared helpers for scripts/kernel-build and scripts/vm (sourced, not executed).

# Repo root = two levels above this file (scripts/lib/common.sh).
PIDFD_REAP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
PIDFD_REAP_CACHE="${PIDFD_REAP_CACHE:-/var/cache/pidfd-reap}"
# The default base is always usable (a missing series dir = empty series);
# any other base needs its series directory kernel-patch/linux-<base>, and is
# built from Debian's linux-source-<base> (see check_base).
PIDFD_REAP_DEFAULT_BASE=6.12

: "${PIDFD_REAP_QUIET:=0}"
_prog="$(basename "$0")"

# Progress goes to stderr so stdout stays machine-readable.
log()  { [[ $PIDFD_REAP_QUIET == 1 ]] || printf '%s: %s\n' "$_prog" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$_prog" "$*" >&2; }
die()  { printf '%s: error: %s\n' "$_prog" "$*" >&2; exit 1; }

# check_base BASE: fail clearly unless the patch series for BASE exists.
check_base() {
	local base=$1
	[[ $base =~ ^[0-9]+\.[0-9]+$ ]] || die "invalid --base '$base' (expected e.g. 6.12)"
	[[ $base == "$PIDFD_REAP_DEFAULT_BASE" || -d $PIDFD_REAP_ROOT/kernel-patch/linux-$base ]] ||
		die "--base $base is not supported yet: no kernel-patch/linux-$base series (create that directory to add it)"
}

# ensure_packages PKG...: apt-get install the Debian packages that are not
# installed yet ('apt-get update' at most once per process). With
# PIDFD_REAP_NO_INSTALL=1 (set by `pidfd-reap vm`, which must not install
# system packages behind its user's back) name them and fail instead.
_apt_updated=0
ensure_packages() {
	local missing=() p st
	for p in "$@"; do
		st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
		[[ $st == installed ]] || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	[[ ${PIDFD_REAP_NO_INSTALL:-0} != 1 ]] ||
		die "missing Debian package(s): ${missing[*]} (install them: apt-get install ${missing[*]})"
	log "installing missing packages: ${missing[*]}"
	if ((!_apt_updated)); then
		apt-get update -qq >&2 || die "apt-get update failed"
		_apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 ||
		die "apt-get install ${missing[*]} failed"
}
