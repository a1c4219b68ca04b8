#!/usr/bin/env bash
# Creates .venv-colab: the library as Colab runs it, on Python 3.13 with the newest jax/flax/optax/orbax/grain
# that PyPI serves, installed from the package's metadata (`pip install -e .[test]`, pyproject.toml's lower
# bounds). requirements-colab.txt pins what that resolved to, so CI is reproducible; regenerate it to move to
# newer releases:
#   bash experiments/setup_colab_env.sh --relock    # fresh venv, newest releases, rewrites requirements-colab.txt
# Idempotent otherwise: reinstalls only when requirements-colab.txt, pyproject.toml or the interpreter changed.
# Python 3.13 comes from $COLAB_PYTHON, else pyenv's 3.13.0, else python3.13 on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-colab
lock=requirements-colab.txt
relock=false
case "${1:-}" in
  --relock) relock=true ;;
  "") ;;
  *) echo "usage: $0 [--relock]" >&2; exit 2 ;;
esac

PYTHON="${COLAB_PYTHON:-${PYENV_ROOT:-$HOME/.pyenv}/versions/3.13.0/bin/python}"
[ -x "$PYTHON" ] || PYTHON=$(command -v python3.13 || true)
if [ -z "$PYTHON" ] || ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
  echo "setup_colab_env.sh needs Python 3.13 (Colab's): none at \$COLAB_PYTHON, pyenv's 3.13.0 or" \
       "python3.13 on PATH (install one with 'pyenv install 3.13.0')." >&2
  exit 1
fi

stamp=$venv/.requirements.sha256
want=$(cat "$lock" pyproject.toml <("$PYTHON" --version) | sha256sum | cut -d' ' -f1)
if ! $relock && [ -x $venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

if $relock; then
  echo "Re-resolving $venv from pyproject.toml with the newest releases (a few minutes)..." >&2
  rm -rf $venv
  "$PYTHON" -m venv $venv
  $venv/bin/python -m pip install -q --upgrade pip >&2
  $venv/bin/python -m pip install -q -e ".[test]" >&2
  {
    echo "# What \`pip install -e .[test]\` resolved on $("$PYTHON" --version) (Colab's environment), $(date -u +%Y-%m-%d)."
    echo "# experiments/setup_colab_env.sh installs the package against these pins; regenerate with"
    echo "#   bash experiments/setup_colab_env.sh --relock"
    $venv/bin/python -m pip freeze --exclude-editable
  } > "$lock"
  want=$(cat "$lock" pyproject.toml <("$PYTHON" --version) | sha256sum | cut -d' ' -f1)
  echo "Wrote $lock:" >&2
  grep -iE '^(jax|jaxlib|flax|optax|orbax-checkpoint|grain|numpy|scipy|librosa|numba)==' "$lock" >&2
else
  echo "Setting up $venv (Python 3.13, $lock; a few minutes)..." >&2
  rm -rf $venv
  "$PYTHON" -m venv $venv
  $venv/bin/python -m pip install -q --upgrade pip >&2
  # From the package's metadata, every version held to the lock.
  $venv/bin/python -m pip install -q -c "$lock" -e ".[test]" >&2
  # A dependency pyproject.toml gained since the lock would have come in unpinned.
  unpinned=$(LC_ALL=C comm -23 <($venv/bin/python -m pip freeze --exclude-editable | LC_ALL=C sort) \
                               <(grep -v '^#' "$lock" | LC_ALL=C sort))
  if [ -n "$unpinned" ]; then
    echo "$lock is stale (installed but not pinned: $(echo $unpinned)); run" \
         "'bash experiments/setup_colab_env.sh --relock'." >&2
    exit 1
  fi
fi
# Compile librosa's numba kernels before anything runs in parallel (see experiments/warm_caches.py).
$venv/bin/python -m experiments.warm_caches >&2
echo "$want" > "$stamp"
