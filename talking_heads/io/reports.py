"""What every result file records: the command, the machine, JSON-safe values."""

from __future__ import annotations

import json
import math
import os
import pathlib
import platform
import sys
import time
from typing import Any, Callable

import jax
import numpy as np

from talking_heads.io import atomic


def command_line() -> str:
  """How this process was launched, as `python -m experiments.<module> <flags>` when run so."""
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  program = f"python -m {spec.name}" if spec is not None else sys.argv[0]
  return " ".join([program, *sys.argv[1:]])


def machine_description() -> str:
  """CPU, core count and JAX backend, for reports."""
  device = jax.devices()[0]
  return (f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
          f"jax {jax.__version__} on {device.platform} ({device.device_kind})").replace("  ", " ")


def to_json(value: Any) -> Any:
  """Tuples to lists, numpy scalars to Python, non-finite floats to strings (JSON has none)."""
  if isinstance(value, dict):
    return {str(k): to_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_json(v) for v in value]
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else str(float(value))
  if isinstance(value, np.integer):
    return int(value)
  return value


NON_FINITE_TEXT = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def from_json(value: Any) -> Any:
  """Undoes `to_json`'s one lossy step: the text it wrote for non-finite floats becomes floats."""
  if isinstance(value, dict):
    return {k: from_json(v) for k, v in value.items()}
  if isinstance(value, list):
    return [from_json(v) for v in value]
  return NON_FINITE_TEXT.get(value, value) if isinstance(value, str) else value


def write_json(path: str | os.PathLike[str], results: Any) -> None:
  """`results` as JSON at `path`, atomically (a kill leaves the previous version whole)."""
  with atomic.output(path) as tmp:
    tmp.write_text(json.dumps(to_json(results), indent=2))


def read_json(path: str | os.PathLike[str]) -> Any:
  """What `write_json` wrote, non-finite values included."""
  return from_json(json.loads(pathlib.Path(path).read_text()))


def write_results(path: str | os.PathLike[str], results: dict[str, Any], markdown: str) -> None:
  """`results` as JSON at `path` and `markdown` beside it (same stem, .md); creates the folder."""
  path = pathlib.Path(path)
  write_json(path, results)
  path.with_suffix(".md").write_text(markdown)


def timed_results(path: str | os.PathLike[str], compute: Callable[[], dict[str, Any]],
                  markdown: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
  """A results command's ending: `compute()` timed, stamped with the command line, machine and
  duration, written by `write_results` (JSON at `path`, markdown beside it) and the markdown
  printed. Returns the stamped results."""
  start = time.perf_counter()
  results = compute()
  results.update(command=command_line(), machine=machine_description(),
                 duration_s=round(time.perf_counter() - start, 1))
  text = markdown(results)
  write_results(path, results, text)
  print(text)
  return results
