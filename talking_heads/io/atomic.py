"""Atomic outputs that respect the umask: written beside their final name, renamed when complete.

`tempfile.mkstemp` / `mkdtemp` create private files (0600) and directories (0700) whatever the
umask, and the rename keeps that mode, so outputs written through them were unreadable to the
group and others even under umask 022. Here the temporary is created with mode 0666 (a file) or
0777 (a directory), which the kernel narrows by the umask exactly as for `open` and `mkdir`.

  with atomic.output(path) as tmp:         # a new empty file beside `path`
    tmp.write_bytes(data)                  # `path` appears, complete, when the block ends
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import shutil
from typing import Iterator


@contextlib.contextmanager
def output(path: str | os.PathLike[str], *, directory: bool = False, prefix: str | None = None,
           suffix: str = ".tmp") -> Iterator[pathlib.Path]:
  """Yields a new temporary file (or empty directory) beside `path` that becomes `path`.

  When the block ends without error the temporary is renamed to `path` (replacing a file; a
  directory must not exist yet); otherwise it is removed. Parent directories are created.

  Args:
    path: the final name.
    directory: create a directory instead of a file.
    prefix: start of the temporary's name (default `.<name>.`: hidden).
    suffix: end of the temporary's name (e.g. `.mp4` where a writer picks the format by it).
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / f"{f'.{path.name}.' if prefix is None else prefix}{secrets.token_hex(8)}{suffix}"
  if directory:
    os.mkdir(tmp, 0o777)
  else:
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
  try:
    yield tmp
    os.replace(tmp, path)
  except BaseException:
    if directory:
      shutil.rmtree(tmp, ignore_errors=True)
    elif os.path.exists(tmp):
      os.unlink(tmp)
    raise
