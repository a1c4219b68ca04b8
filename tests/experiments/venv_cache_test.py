"""experiments/venv_cache.sh: the set-up scripts' environments, built once per machine and
shared by clones (BUILD here writes a marker instead of installing anything)."""

import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def ensure(checkout: pathlib.Path, key: str, cache: str | pathlib.Path) -> list[str]:
  """Runs `ensure_venv .venv env KEY build` in `checkout`; returns the dirs BUILD was called on."""
  log = checkout / "builds.log"
  script = f"""
set -euo pipefail
source {ROOT}/experiments/venv_cache.sh
build() {{ mkdir -p "$1/bin"; printf '#!/bin/sh\\n' > "$1/bin/python"; chmod +x "$1/bin/python";
          echo "$1" >> {log}; }}
ensure_venv .venv env {key} build
"""
  env = dict(os.environ, TALKING_HEADS_VENV_CACHE=str(cache))
  subprocess.run(["bash", "-c", script], cwd=checkout, env=env, check=True)
  return log.read_text().split() if log.exists() else []


def test_clones_share_one_build_per_key_and_old_ones_are_pruned(tmp_path):
  cache = tmp_path / "cache"
  first, second = tmp_path / "clone1", tmp_path / "clone2"
  first.mkdir(), second.mkdir()

  assert ensure(first, "k1", cache) == [str(cache / "env-k1")]
  assert (first / ".venv").is_symlink() and (first / ".venv").resolve() == cache / "env-k1"
  assert (cache / "env-k1" / ".requirements.sha256").read_text().strip() == "k1"
  assert ensure(second, "k1", cache) == []               # the second clone reuses it
  assert (second / ".venv").resolve() == cache / "env-k1"
  assert ensure(first, "k1", cache) == [str(cache / "env-k1")]   # nothing rebuilt

  for key in ("k2", "k3", "k4"):                         # a requirements change builds anew
    ensure(first, key, cache)
    assert (first / ".venv").resolve() == cache / f"env-{key}"
  assert sorted(p.name for p in cache.glob("env-*")) == ["env-k2", "env-k3", "env-k4"]


def test_an_interrupted_build_is_redone(tmp_path):
  cache, clone = tmp_path / "cache", tmp_path / "clone"
  clone.mkdir()
  (cache / "env-k1" / "bin").mkdir(parents=True)         # no .complete: a build that died
  assert ensure(clone, "k1", cache) == [str(cache / "env-k1")]
  assert (cache / "env-k1" / ".complete").exists()


def test_a_directory_venv_and_cache_off_are_updated_in_place(tmp_path):
  clone = tmp_path / "clone"
  (clone / ".venv" / "bin").mkdir(parents=True)           # set up before the cache existed
  assert ensure(clone, "k1", tmp_path / "cache") == [".venv"]
  assert not (clone / ".venv").is_symlink() and not (tmp_path / "cache").exists()
  assert ensure(clone, "k1", tmp_path / "cache") == [".venv"]   # stamp matches: no build

  other = tmp_path / "other"
  other.mkdir()
  assert ensure(other, "k1", "off") == [".venv"]
  assert (other / ".venv" / ".requirements.sha256").read_text().strip() == "k1"
