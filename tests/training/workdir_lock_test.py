"""One run per workdir: a second launch on a held workdir fails at once; dead holders are taken over."""

import contextlib
import errno
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from experiments.configs import frame_autoencoder
from talking_heads.training import loop, workdir_lock

REPO = pathlib.Path(__file__).parents[2]
HOLDER = """
import sys, time
from talking_heads.training import loop, workdir_lock
with loop.signals_interrupt(), workdir_lock.hold(sys.argv[1]):
  print("held", flush=True)
  time.sleep(600)
"""


@contextlib.contextmanager
def holder(workdir):
  """A process holding `workdir`'s lock (as a training does), killed on exit if still alive."""
  process = subprocess.Popen([sys.executable, "-c", HOLDER, str(workdir)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, JAX_PLATFORMS="cpu"))
  try:
    assert process.stdout.readline().strip() == "held"
    yield process
  finally:
    process.kill()
    process.wait()


def _refusal(workdir, pid):
  return (rf"{re.escape(str(workdir))} is in use: process {pid} on {re.escape(socket.gethostname())} "
          r"\(since \d{4}-\d\d-\d\dT")


def test_a_second_training_fails_at_once_naming_the_holder(tmp_path):
  config = frame_autoencoder.get_config("tiny")
  config.total_steps, config.progress_bar = 2, False
  with holder(tmp_path) as process:
    start = time.perf_counter()
    with pytest.raises(workdir_lock.WorkdirLockedError, match=_refusal(tmp_path, process.pid)):
      loop.train_and_evaluate(config, str(tmp_path))
    assert time.perf_counter() - start < 10          # before building or compiling anything
    assert not (tmp_path / "config.json").exists() and not (tmp_path / "checkpoints").exists()


def test_a_killed_holder_is_taken_over_with_a_warning(tmp_path, caplog):
  with holder(tmp_path) as process:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (tmp_path / workdir_lock.LOCK_FILE).exists()    # its record is left behind
    with workdir_lock.hold(tmp_path):
      assert f'"pid": {os.getpid()}' in (tmp_path / workdir_lock.LOCK_FILE).read_text()
  assert re.search(rf"lock of process {process.pid} .* was left behind", caplog.text)
  assert not (tmp_path / workdir_lock.LOCK_FILE).exists()


def test_released_on_sigterm(tmp_path):
  with holder(tmp_path) as process:
    process.terminate()
    process.wait(timeout=30)
  assert not (tmp_path / workdir_lock.LOCK_FILE).exists()
  with workdir_lock.hold(tmp_path):
    pass


def test_without_flock_the_record_decides(tmp_path, monkeypatch, caplog):
  """Some network filesystems refuse flock: a live pid on this host (or any other host) holds it."""
  def no_flock(fd, operation):
    raise OSError(errno.ENOLCK, "No locks available")

  with holder(tmp_path) as process:
    monkeypatch.setattr(workdir_lock.fcntl, "flock", no_flock)
    with pytest.raises(workdir_lock.WorkdirLockedError, match=_refusal(tmp_path, process.pid)):
      with workdir_lock.hold(tmp_path):
        pass
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with workdir_lock.hold(tmp_path):
      pass
  assert f"lock of process {process.pid}" in caplog.text
  (tmp_path / workdir_lock.LOCK_FILE).write_text(
      '{"host": "elsewhere", "pid": 1, "started": "2026-01-01T00:00:00+00:00"}')
  with pytest.raises(workdir_lock.WorkdirLockedError, match="process 1 on elsewhere"):
    with workdir_lock.hold(tmp_path):
      pass
