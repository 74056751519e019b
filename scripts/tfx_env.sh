#!/usr/bin/env bash
# tfx_env.sh — build once, cache, and use the TFX 1.21 environment: a Debian 13 (trixie) chroot with Python 3.13
# and a venv installed from constraints/tfx.txt (../shared/ENVIRONMENT.md, Recipe B). TFX 1.21's native wheels
# (ml-metadata, TFDV) need glibc >= 2.39; hosts with an older glibc run TFX through this script.
#
#   scripts/tfx_env.sh build          build or update the cached environment (idempotent; root)
#   scripts/tfx_env.sh run CMD...     run CMD inside it, in the clone (see Paths below)
#   scripts/tfx_env.sh shell          an interactive shell inside it
#   scripts/tfx_env.sh paths ARGS...  print how `run` would map these arguments' paths (no root needed)
#   scripts/tfx_env.sh clean          delete the cached environment
#
# Paths: the clone is mounted both at its host path and at /repo, ../shared at its host path and at /shared, and
# CMD runs in the host's working directory when that is inside the clone (else the clone's root), so paths mean
# and print the same inside and out. Every other absolute path an argument names (`/abs/x`, `--out=/abs/x`,
# `key=/abs/x`, `sqlite:////abs/x`, `file:///abs/x`) gets its nearest existing host folder bind-mounted at the same
# path, so what CMD writes there lands on the host; a path whose folder would hide the environment's own files
# (/usr, /etc, /opt, /root, ... or /) is refused with a one-line error; a path that exists only inside the
# environment (/opt/tfxvenv/bin/python, /usr/bin/env) keeps meaning the environment's.
#
# Cache: $HISTOZOO_TFX_ROOT (default /opt/histozoo-tfx), outside the clone; one cache serves every clone because
# the clone is bind-mounted at /repo. `build` skips each step already done: debootstrap, apt, and the pip step,
# whose stamp holds the hash of constraints/tfx.txt + setup.py (a changed pin re-runs only `pip install`).
# Every command runs in a private mount namespace (unshare -m), so mounts never leak to the host or to a
# concurrent run; they are also unmounted on exit (trap).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${HISTOZOO_TFX_ROOT:-/opt/histozoo-tfx}
R=$ROOT/rootfs
VENV=/opt/tfxvenv
SHARED=${HISTOZOO_SHARED:-$(dirname "$REPO")/shared}
SUITE=trixie

die() { echo "tfx_env.sh: $*" >&2; exit 2; }
log() { echo "tfx_env.sh: $*" >&2; }

usage() { awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "${BASH_SOURCE[0]}"; }

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot and mount need it); try: sudo $0 $*"; }

env_hash() { cat "$REPO/constraints/tfx.txt" "$REPO/setup.py" | sha256sum | cut -d' ' -f1; }

mounted_under() { awk -v r="$1" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/self/mounts; }

# -- mounts (called inside the private namespace) -------------------------------------------------------------
MOUNTED=()
mnt() {  # mnt TARGET mount-args...
  local target=$1; shift
  mkdir -p "$target"
  mountpoint -q "$target" && return 0
  mount "$@" "$target"
  MOUNTED+=("$target")
}
unmount_all() {
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTED[$i]}" 2>/dev/null || true; done
  MOUNTED=()
}
setup_mounts() {  # setup_mounts [with_shared [host folders to bind at their own path...]]
  trap unmount_all EXIT
  mnt "$R/proc" -t proc proc
  mnt "$R/sys" -t sysfs sys
  mnt "$R/dev" --bind /dev
  mnt "$R/dev/pts" --bind /dev/pts
  if [ "${1:-}" = with_shared ]; then
    shift
    [ -d "$SHARED" ] || die "$SHARED: no shared folder beside the repo (set HISTOZOO_SHARED to the folder holding data/)"
    local d
    # the arguments' folders first (the clone may lie under one). Their mount points stay in the environment as
    # empty folders: removing one would unmount it from a concurrent run that uses the same folder.
    for d in "$@"; do mnt "$R$d" --bind "$d"; done
    mnt "$R$REPO" --bind "$REPO"
    mnt "$R$SHARED" --bind "$SHARED"
    mnt "$R/shared" --bind "$SHARED"
  fi
  mnt "$R/repo" --bind "$REPO"
  cp /etc/resolv.conf "$R/etc/resolv.conf" 2>/dev/null || true
}

# -- paths named by a command's arguments (`run`) ----------------------------------------------------------------
# Folders of the environment that a host folder must not cover: binding over them would hide its system or venv.
SYSTEM_DIRS=(/bin /boot /dev /etc /lib /lib32 /lib64 /libx32 /opt /proc /root /run /sbin /srv /sys /usr /var)

under() { [ "$1" = "$2" ] || [ "$2" = / ] || [[ "$1" == "$2"/* ]]; }  # under PATH DIR

arg_path() {  # the absolute path an argument names, if any: /x, --flag=/x, key=/x, sqlite:////x, file:///x
  local re='^(--?[A-Za-z0-9_.-]+=|[A-Za-z_][A-Za-z0-9_.]*=)?(sqlite:///|file://)?(/.*)$'
  [[ $1 =~ $re ]] || return 1
  realpath -m -s -- "${BASH_REMATCH[3]}"
}

in_system_dir() { local d; for d in "${SYSTEM_DIRS[@]}"; do under "$1" "$d" && return 0; done; return 1; }

# plan_binds ARGS...: sets BINDS to the host folders to bind at their own path so that every absolute path the
# arguments name means the host's; dies (one line) on a path that cannot be shared that way.
plan_binds() {
  BINDS=()
  local a p d b seen
  for a in "$@"; do
    p=$(arg_path "$a") || continue
    if under "$p" /repo || under "$p" /shared || under "$p" "$REPO" || under "$p" "$SHARED"; then continue; fi
    if under "$p" /dev || under "$p" /proc || under "$p" /sys; then continue; fi  # mounted from the host already
    if in_system_dir "$p" && { [ -e "$R$p" ] || [ -L "$R$p" ]; }; then continue; fi  # the environment's own file
    d=$(dirname -- "$p")
    while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done  # nearest existing host folder
    [ "$d" != / ] || die "$p is outside the clone and its nearest existing host folder is /; create its folder" \
      "first or use a path under $REPO, $SHARED or /tmp"
    under "$ROOT" "$d" && die "$p: its folder $d holds the TFX environment ($ROOT) and cannot be mounted into it"
    if in_system_dir "$d" && [ -d "$R$d" ] && [ -n "$(ls -A "$R$d" 2>/dev/null)" ]; then
      die "$p is in $d, which the TFX environment has too (mounting the host's would hide its files); use a" \
        "path under $REPO, $SHARED, /tmp or another folder"
    fi
    seen=
    for b in "${BINDS[@]}"; do under "$d" "$b" && { seen=1; break; }; done
    [ -n "$seen" ] && continue
    local keep=()
    for b in "${BINDS[@]}"; do under "$b" "$d" || keep+=("$b"); done  # a wider folder replaces narrower ones
    BINDS=("${keep[@]}" "$d")
  done
}

# The folder CMD starts in: the host's working directory when it is inside the clone or ../shared, else the clone.
run_dir() {
  local w
  w=$(pwd -P 2>/dev/null || pwd)
  if under "$w" "$REPO" || under "$w" "$SHARED"; then echo "$w"; else echo "$REPO"; fi
}

# Run a bash command line inside the chroot with a clean environment (+ CI and HISTOZOO_/MLFLOW_/TF_ variables).
IN() {
  local pass=() v
  for v in $(compgen -e); do
    case "$v" in
      CI|HISTOZOO_DATA|HISTOZOO_TFX_ROOT|HISTOZOO_SHARED) ;;
      HISTOZOO_*|MLFLOW_*|TF_*|PYTEST_*) pass+=("$v=${!v}") ;;
    esac
  done
  [ -n "${CI:-}" ] && pass+=("CI=$CI")
  chroot "$R" /usr/bin/env -i PATH="$VENV/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt GIT_PYTHON_REFRESH=quiet HISTOZOO_DATA=/shared/data "${pass[@]}" \
    bash -c "$@"
}

# -- build ------------------------------------------------------------------------------------------------------
do_build() {  # runs inside the private namespace
  local t0=$SECONDS t
  mkdir -p "$ROOT"
  if [ ! -e "$ROOT/.debootstrap.done" ]; then
    if [ -e "$R" ]; then
      [ -z "$(mounted_under "$R")" ] || die "$R: something is still mounted under it; unmount before rebuilding"
      rm -rf --one-file-system "$R"
    fi
    command -v debootstrap >/dev/null || { apt-get update -q && apt-get install -y -q debootstrap; }
    local mirror
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${HISTOZOO_TFX_MIRROR:-${mirror:-http://deb.debian.org/debian}}
    t=$SECONDS; log "debootstrap $SUITE from $mirror into $R"
    debootstrap --variant=minbase "$SUITE" "$R" "$mirror" >"$ROOT/debootstrap.log" 2>&1 \
      || die "debootstrap failed; see $ROOT/debootstrap.log"
    touch "$ROOT/.debootstrap.done"; log "debootstrap: $((SECONDS - t)) s"
  fi
  setup_mounts
  # TLS egress may be re-signed by a local CA: the chroot must trust the host's extra certificates.
  mkdir -p "$R/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/" 2>/dev/null || true
  if [ ! -e "$ROOT/.apt.done" ]; then
    t=$SECONDS; log "apt: python3 python3-venv python3-dev g++ ca-certificates"
    IN 'apt-get update -q && apt-get install -y -q --no-install-recommends python3 python3-venv python3-dev g++ \
        ca-certificates && apt-get clean'
    touch "$ROOT/.apt.done"; log "apt: $((SECONDS - t)) s"
  fi
  IN 'update-ca-certificates >/dev/null'
  local want have=""
  want=$(env_hash)
  [ -f "$ROOT/stamp" ] && have=$(cat "$ROOT/stamp")
  if [ "$want" != "$have" ]; then
    t=$SECONDS; log "pip: histozoo[dev] + tfx + kfp-pipeline-spec -c constraints/tfx.txt into $VENV (~4 GB of wheels)"
    # tfx and kfp-pipeline-spec are named here (versions from the constraints file) rather than through the [tfx]
    # extra, so the environment follows constraints/tfx.txt even where setup.py's extra lags behind it.
    IN "[ -x $VENV/bin/python ] || python3 -m venv $VENV; pip install -q -U pip && \
        pip install --progress-bar off -c /repo/constraints/tfx.txt -e '/repo[dev]' tfx kfp-pipeline-spec && pip check"
    echo "$want" >"$ROOT/stamp"; log "pip: $((SECONDS - t)) s"
  else
    log "environment up to date ($ROOT/stamp matches constraints/tfx.txt + setup.py)"
  fi
  log "build done in $((SECONDS - t0)) s ($(du -sh --one-file-system "$R" 2>/dev/null | cut -f1))"
}

ensure_built() {
  [ -f "$ROOT/stamp" ] || die "no TFX environment at $ROOT; build it first: $0 build"
  [ "$(cat "$ROOT/stamp")" = "$(env_hash)" ] || log "warning: constraints/tfx.txt or setup.py changed since the " \
    "environment was built; run '$0 build' to update it"
}

# Editable install of this clone (no deps) unless every package of the repo already imports from /repo
# (a package added since the last install is missing from the editable finder's map).
ensure_editable() {
  IN "cd / && python - 2>/dev/null <<'EOF' || pip install -q --no-deps -e /repo
import importlib.util, os, sys
pkgs = [d for d in ('histozoo', 'zoo', 'pipelines', 'serving') if os.path.isfile(f'/repo/{d}/__init__.py')]
ok = all((s := importlib.util.find_spec(p)) is not None and s.origin.startswith('/repo/') for p in pkgs)
sys.exit(0 if ok else 1)
EOF"
}

do_run() {
  local dir
  plan_binds "$@"
  dir=$(run_dir)
  setup_mounts with_shared "${BINDS[@]}"
  ensure_editable
  # what the command's outcome printers use to name /repo/... and /shared/... paths by their host paths
  export HISTOZOO_HOST_REPO="$REPO" HISTOZOO_HOST_SHARED="$SHARED"
  IN 'cd "$0" && "$@"' "$dir" "$@"
}

do_shell() {
  local dir
  dir=$(run_dir)
  setup_mounts with_shared
  ensure_editable
  export HISTOZOO_HOST_REPO="$REPO" HISTOZOO_HOST_SHARED="$SHARED"
  IN 'cd "$0" && exec bash -i' "$dir"
}

do_paths() {  # what `run` would do with these arguments (no root, nothing mounted)
  plan_binds "$@"
  echo "workdir $(run_dir)"
  echo "bind $REPO (also /repo)"
  echo "bind $SHARED (also /shared)"
  local b
  for b in "${BINDS[@]}"; do echo "bind $b"; done
}

do_clean() {
  [ -e "$ROOT" ] || { log "nothing to clean at $ROOT"; return 0; }
  [ -z "$(mounted_under "$R")" ] || die "$R: still mounted: $(mounted_under "$R" | tr '\n' ' ')"
  rm -rf --one-file-system "$ROOT"
  log "removed $ROOT"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  build|run|shell|clean) need_root "$cmd" ;;
  paths) do_paths "$@"; exit 0 ;;
  -h|--help|help|"") usage; exit 0 ;;
  _ns_build|_ns_run|_ns_shell) ;;
  *) usage >&2; die "unknown subcommand '$cmd'" ;;
esac

# Re-enter in a private mount namespace for the commands that mount.
case "$cmd" in
  build) exec unshare --mount --propagation private "$0" _ns_build ;;
  run)   [ $# -gt 0 ] || die "run: give a command, e.g. $0 run python -m pytest -m tfx tests/pipelines"
         ensure_built; exec unshare --mount --propagation private "$0" _ns_run "$@" ;;
  shell) ensure_built; exec unshare --mount --propagation private "$0" _ns_shell ;;
  clean) do_clean ;;
  _ns_build) do_build ;;
  _ns_run)   do_run "$@" ;;
  _ns_shell) do_shell ;;
esac
