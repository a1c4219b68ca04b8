"""Two JAX processes on one machine (gloo collectives over CPU): a real multi-host run.

Each process has 4 CPU devices, reads its own data shard, and the (data=4, fsdp=2) mesh spans
both. Checks that both processes see the same global losses, that orbax saves one checkpoint
with a data-iterator file per process, and that a relaunch of both processes resumes.
"""

import os
import pathlib
import socket
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

WORKER = r"""
import os, sys
process_id, port, workdir, total_steps = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
from absl import flags, logging
flags.FLAGS.mark_as_parsed()
logging.set_verbosity(logging.INFO)
from experiments.configs import frame_autoencoder
from talking_heads.training import distributed, loop
distributed.maybe_initialize(True, f"localhost:{port}", 2, process_id)
config = frame_autoencoder.get_config(f"tiny,total_steps={total_steps}")
config.progress_bar = False
config.mesh.fsdp = 2
config.sharding.fsdp_min_size = 1000
result = loop.train_and_evaluate(config, workdir)
print("RESULT", jax.process_count(), jax.device_count(), result.step,
      ",".join(f"{h['loss']:.7f}" for h in result.history), flush=True)
"""


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _run_two_processes(tmp_path, workdir, total_steps):
  script = tmp_path / "worker.py"
  script.write_text(WORKER)
  port = str(_free_port())
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
             PYTHONPATH=str(ROOT))
  procs = [subprocess.Popen([sys.executable, str(script), str(i), port, str(workdir), str(total_steps)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outputs = [p.communicate(timeout=300) for p in procs]
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  results = [next(l for l in out.splitlines() if l.startswith("RESULT")).split() for out, _ in outputs]
  return results, [err for _, err in outputs]


@pytest.mark.slow
def test_two_process_training_and_resume(tmp_path):
  workdir = tmp_path / "run"
  results, _ = _run_two_processes(tmp_path, workdir, total_steps=10)
  assert results[0] == results[1]                          # same global losses on both processes
  _, process_count, device_count, step, losses = results[0]
  assert (process_count, device_count, step) == ("2", "8", "10") and len(losses.split(",")) == 10
  data_dir = workdir / "checkpoints" / "10" / "data"
  assert {"process_0-of-2.json", "process_1-of-2.json"} <= set(os.listdir(data_dir))

  results, logs = _run_two_processes(tmp_path, workdir, total_steps=15)
  assert results[0] == results[1] and results[0][3] == "15"
  assert len(results[0][4].split(",")) == 5
  assert all("Resumed from step 10" in log for log in logs)
