"""The persistent compilation cache: where it goes, how it is switched off, and that a second
process reuses what the first compiled."""

import os
import pathlib
import subprocess
import sys

from talking_heads import compilation_cache

ROOT = pathlib.Path(__file__).resolve().parents[1]

COMPILE_ONCE = """
import jax, jax.numpy as jnp
from talking_heads import compilation_cache
print(compilation_cache.enable())
print(float(jax.jit(lambda x: jnp.tanh(x) * 3.0 + x.sum())(jnp.arange(7.0)).sum()))
"""


def run(env_cache):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TALKING_HEADS_COMPILATION_CACHE=env_cache)
  result = subprocess.run([sys.executable, "-c", COMPILE_ONCE], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout.split()


def test_a_second_process_reuses_the_first_ones_executables(tmp_path):
  cache = tmp_path / "cache"
  directory, value = run(str(cache))
  assert directory == str(cache)
  written = sorted(p.name for p in cache.rglob("*") if p.is_file())
  assert written, "the first process cached nothing"
  directory_again, value_again = run(str(cache))
  assert value_again == value
  # A hit adds no executable (access-time bookkeeping files aside).
  again = sorted(p.name for p in cache.rglob("*") if p.is_file() and "-atime" not in p.name)
  assert again == [name for name in written if "-atime" not in name]


def test_off_means_no_cache(tmp_path):
  directory, _ = run("off")
  assert directory == "None"


def test_default_directory_follows_xdg_cache_home(monkeypatch, tmp_path):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert compilation_cache.default_directory() == tmp_path / "talking_heads" / "jax"
