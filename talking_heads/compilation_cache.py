"""JAX's persistent compilation cache for the launchers and the tests.

Every launch compiles the same train steps, samplers and encoders again; on 2 CPU cores compiling
is most of a tiny run (two DAE-Talker and expert test files: 114 s cold, 33 s with the cache warm).
XLA keys each executable by its program, jax version, backend and flags, so a cached one is the
one a fresh compile would give. `experiments.bench` leaves the cache off: it reports compile time.

  TALKING_HEADS_COMPILATION_CACHE=/path   # where (default ~/.cache/talking_heads/jax)
  TALKING_HEADS_COMPILATION_CACHE=off     # no cache
"""

from __future__ import annotations

import os
import pathlib

import jax

ENV_VAR = "TALKING_HEADS_COMPILATION_CACHE"
MAX_BYTES = 4 << 30   # least recently used entries go beyond this


def default_directory() -> pathlib.Path:
  cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(cache_home) / "talking_heads" / "jax"


def enable(directory: str | os.PathLike[str] | None = None) -> pathlib.Path | None:
  """Turns the cache on for every later compilation of this process; returns its directory, or
  None when `$TALKING_HEADS_COMPILATION_CACHE` is `off`. Call before the first jit runs."""
  setting = os.environ.get(ENV_VAR, "")
  if directory is None and setting.lower() in ("off", "0", "false", "none"):
    return None
  path = pathlib.Path(directory or setting or default_directory()).expanduser()
  path.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(path))
  # Small programs too: a tiny run is hundreds of sub-second compiles.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
  return path
