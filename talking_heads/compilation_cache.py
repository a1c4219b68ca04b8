"""JAX's persistent compilation cache for the launchers and the tests.

Every launch compiles the same train steps, samplers and encoders again; on 2 CPU cores compiling
is most of a tiny run (two DAE-Talker and expert test files: 114 s cold, 33 s with the cache warm).
XLA keys each executable by its program, jax version, backend and flags, so a cached one is the
one a fresh compile would give. `experiments.bench` leaves the cache off: it reports compile time.

  TALKING_HEADS_COMPILATION_CACHE=/path   # where (default ~/.cache/talking_heads/jax)
  TALKING_HEADS_COMPILATION_CACHE=off     # no cache

The size is bounded here, once per process at `enable()`, not by jax's own LRU bound
(`jax_compilation_cache_max_size`): that one takes a machine-wide file lock and lists the whole
directory on every write, which serialised parallel test workers on a cache of thousands of small
programs (processes sleeping on the lock, "could not acquire" warnings).
"""

from __future__ import annotations

import os
import pathlib

import jax

ENV_VAR = "TALKING_HEADS_COMPILATION_CACHE"
MAX_BYTES = 4 << 30        # beyond this, the oldest entries go at the next start ...
PRUNED_BYTES = 3 << 30     # ... down to this, so pruning is rare


def default_directory() -> pathlib.Path:
  cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(cache_home) / "talking_heads" / "jax"


def prune(path: pathlib.Path, max_bytes: int = MAX_BYTES, keep_bytes: int = PRUNED_BYTES) -> int:
  """Deletes the oldest-written files of `path` until at most `keep_bytes` remain, when they
  exceed `max_bytes`; returns how many it deleted. Safe beside running processes: a file deleted
  under a reader stays readable to it, and a missing entry is a cache miss."""
  entries = []
  for entry in os.scandir(path):
    try:
      if entry.is_file(follow_symlinks=False):
        stat = entry.stat()
        entries.append((stat.st_mtime, stat.st_size, entry.path))
    except FileNotFoundError:   # pruned by another process meanwhile
      pass
  total = sum(size for _, size, _ in entries)
  if total <= max_bytes:
    return 0
  deleted = 0
  for _, size, name in sorted(entries):
    if total <= keep_bytes:
      break
    try:
      os.remove(name)
      deleted += 1
    except FileNotFoundError:
      pass
    total -= size
  return deleted


def enable(directory: str | os.PathLike[str] | None = None) -> pathlib.Path | None:
  """Turns the cache on for every later compilation of this process; returns its directory, or
  None when `$TALKING_HEADS_COMPILATION_CACHE` is `off`. Call before the first jit runs."""
  setting = os.environ.get(ENV_VAR, "")
  if directory is None and setting.lower() in ("off", "0", "false", "none"):
    return None
  path = pathlib.Path(directory or setting or default_directory()).expanduser()
  path.mkdir(parents=True, exist_ok=True)
  prune(path)
  jax.config.update("jax_compilation_cache_dir", str(path))
  # Small programs too: a tiny run is hundreds of sub-second compiles.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  return path
