#!/usr/bin/env bash
# Runs the notebooks of experiments/notebooks/ top to bottom with tiny settings, each in a fresh
# kernel of the given Python, and checks that every .ipynb matches its jupytext source
# (tests/notebooks/notebooks_test.py, marker `notebook`). A failing cell fails the run.
#
#   bash experiments/test_notebooks.sh                                   # all, in .venv
#   bash experiments/test_notebooks.sh quickstart scale_out              # some of them
#   bash experiments/test_notebooks.sh --python .venv-colab/bin/python quickstart
#
# Without --python it sets up .venv as experiments/test.sh does. The notebook tools
# (requirements-notebooks.txt: jupytext, nbclient, ipykernel) are installed into that Python's
# environment when missing or changed. Each notebook's time is printed (pytest --durations).
set -euo pipefail
cd "$(dirname "$0")/.."
python=""
while [ $# -gt 0 ]; do
  case "$1" in
    --python) python="${2:?--python needs a path}"; shift 2 ;;
    --python=*) python="${1#--python=}"; shift ;;
    -h|--help) sed -n '2,12p' "$0" | cut -c3-; exit 0 ;;
    -*) echo "test_notebooks.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
for name in "$@"; do
  if [ ! -f "experiments/notebooks/$name.py" ]; then
    known=$(grep -l '^# %%' experiments/notebooks/*.py | xargs -n1 basename | sed 's|\.py$||' |
            tr '\n' ' ')
    echo "test_notebooks.sh: no notebook named '$name' (known: $known)" >&2
    exit 2
  fi
done
if [ -z "$python" ]; then
  bash experiments/setup_env.sh
  python=.venv/bin/python
fi
[ -x "$python" ] || { echo "test_notebooks.sh: --python $python is not an executable" >&2; exit 2; }
prefix=$("$python" -c 'import sys; print(sys.prefix)')
stamp="$prefix/.notebook-requirements.sha256"
want=$(sha256sum requirements-notebooks.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "Installing requirements-notebooks.txt into $prefix..." >&2
  "$python" -m pip install -q -r requirements-notebooks.txt >&2
  echo "$want" > "$stamp"
fi
selection=()
if [ $# -gt 0 ]; then
  expression=$(printf ' or %s' "$@")
  selection=(-k "${expression# or }")
fi
exec "$python" -m pytest -q -m notebook --durations=0 tests/notebooks "${selection[@]}"
