# Sourced by the setup scripts: virtual environments shared by the checkouts of one machine.
#
#   ensure_venv LINK NAME KEY BUILD
#
# makes LINK (e.g. .venv, in the checkout) a virtual environment built for KEY (a hash of what it
# installs and of the interpreter). A fresh checkout gets LINK as a symlink to
# $TALKING_HEADS_VENV_CACHE/NAME-KEY (default ~/.cache/talking_heads/venvs), built once by
# `BUILD DIR` and reused by every later clone with the same requirements, as CI caches keyed by a
# lock file do: a clone's set-up then takes seconds instead of minutes. The newest three
# environments of each NAME are kept. LINK that is a directory (a checkout set up before the cache,
# or TALKING_HEADS_VENV_CACHE=off) is updated in place by `BUILD LINK`: BUILD must work on an
# existing environment as on a new one.

venv_cache_root() {
  local setting="${TALKING_HEADS_VENV_CACHE:-}"
  case "${setting,,}" in
    off|0|false|none) return 1 ;;
  esac
  echo "${setting:-${XDG_CACHE_HOME:-$HOME/.cache}/talking_heads/venvs}"
}

ensure_venv() {
  local link=$1 name=$2 key=$3 build=$4 root target fd
  if [ -d "$link" ] && [ ! -L "$link" ] || ! root=$(venv_cache_root); then
    if [ -x "$link/bin/python" ] && [ "$(cat "$link/.requirements.sha256" 2>/dev/null)" = "$key" ]; then
      return 0
    fi
    [ -L "$link" ] && rm "$link"
    "$build" "$link"
    echo "$key" > "$link/.requirements.sha256"
    return 0
  fi
  target="$root/$name-${key:0:20}"
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$target" ] && [ -f "$target/.complete" ]; then
    return 0
  fi
  mkdir -p "$root"
  exec {fd}>"$root/.$name.lock"
  flock "$fd"                                 # another checkout may be building the same one
  if [ ! -f "$target/.complete" ]; then
    echo "Building $target (once for this machine; later clones reuse it)..." >&2
    rm -rf "$target"
    "$build" "$target"
    echo "$key" > "$target/.requirements.sha256"
    touch "$target/.complete"
  fi
  touch "$target"                             # recency, for pruning
  ls -dt "$root/$name-"* 2>/dev/null | tail -n +4 | xargs -r rm -rf
  flock -u "$fd"
  exec {fd}>&-
  ln -sfn "$target" "$link"
}
