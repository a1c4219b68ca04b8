"""One run per workdir: `<workdir>/.lock` names the process that trains there.

Two trainings on one workdir would overwrite each other's checkpoints and config.json and
interleave metrics.jsonl, so the trainer and the main job hold the workdir's lock for the whole
run and a second launch fails at once, naming the holder. The lock is an exclusive `flock` on the
file, which the kernel drops when its holder exits or is killed, so a lock whose holder died
(kill -9, a crash) is free by construction; the file's record {host, pid, started} names the
holder and is removed on release. A record left by a dead holder is taken over with a warning.
Where the filesystem cannot `flock` (some network filesystems), the record alone decides: a live
pid on this host, or any process on another host (which cannot be checked from here), holds it.

  with workdir_lock.hold(workdir):   # WorkdirLockedError when another live process holds it
    ...
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from typing import Any, Iterator

from absl import logging

LOCK_FILE = ".lock"


class WorkdirLockedError(RuntimeError):
  """Another live process is training in the workdir."""


@contextlib.contextmanager
def hold(workdir: str | os.PathLike[str]) -> Iterator[None]:
  """Holds the lock of `workdir` (an existing directory) inside the block.

  Raises:
    WorkdirLockedError: another live process holds it (naming its host, pid and start time).
  """
  workdir = os.fspath(workdir)
  path = os.path.join(workdir, LOCK_FILE)
  fd = _acquire(workdir, path)
  try:
    yield
  finally:
    try:
      with contextlib.suppress(FileNotFoundError):
        os.unlink(path)   # before unlocking: a process that opened the old file sees it is gone
    finally:
      os.close(fd)


def _acquire(workdir: str, path: str) -> int:
  """An open descriptor of `path`, locked, holding this process's record."""
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(fd)
      raise WorkdirLockedError(_held_message(workdir, path, _read(path))) from None
    except OSError:   # no flock on this filesystem: the record decides
      holder = _read(path)
      if holder and (holder.get("host") != socket.gethostname() or _alive(holder.get("pid"))):
        os.close(fd)
        raise WorkdirLockedError(_held_message(workdir, path, holder)) from None
    try:
      current = os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
      current = False
    if current:
      break
    os.close(fd)   # its holder released it (and removed the file) meanwhile: lock the new one
  if stale := _read(path):
    logging.warning("%s: the lock of process %s on %s (since %s) was left behind; that process "
                    "is gone, so this run takes the workdir over.", workdir, stale.get("pid"),
                    stale.get("host"), stale.get("started"))
  record = {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
  os.ftruncate(fd, 0)
  os.pwrite(fd, json.dumps(record).encode(), 0)
  return fd


def _read(path: str) -> dict[str, Any]:
  """The record in `path`; empty when there is none (a released lock, or one being written)."""
  try:
    with open(path, encoding="utf-8") as f:
      record = json.load(f)
  except (OSError, ValueError):
    return {}
  return record if isinstance(record, dict) else {}


def _alive(pid: Any) -> bool:
  if not isinstance(pid, int) or pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:   # it exists, owned by another user
    pass
  return True


def _held_message(workdir: str, path: str, holder: dict[str, Any]) -> str:
  who = (f"process {holder.get('pid')} on {holder.get('host')} (since {holder.get('started')})"
         if holder else "another process")
  return (f"{workdir} is in use: {who} is training there ({path}); two runs would overwrite "
          "each other's checkpoints. Wait for it, stop it, or use another workdir.")
