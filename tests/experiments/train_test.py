"""The launcher end to end on the frame autoencoder's tiny config: train, checkpoint, resume, bench."""

import json
import os
import pathlib
import socket
import subprocess
import sys

from absl import flags

from experiments import bench
from experiments.configs import frame_autoencoder
from talking_heads.training import workdir_lock

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_train(workdir, *extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  cmd = [sys.executable, "-m", "experiments.train",
         "--config=experiments/configs/frame_autoencoder.py:tiny", f"--workdir={workdir}", *extra]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_launcher_trains_checkpoints_and_resumes(tmp_path):
  first = run_train(tmp_path)
  assert first.returncode == 0, first.stderr[-3000:]
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "5"]
  steps = [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert steps[-1] == 10
  assert list((tmp_path / "images").glob("reconstruction_*.png"))

  second = run_train(tmp_path, "--config.total_steps=15")
  assert second.returncode == 0, second.stderr[-3000:]
  assert "Resumed from step 10" in second.stderr
  assert "15" in os.listdir(tmp_path / "checkpoints")
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if "loss" in r] == [5, 10, 15]


def test_bench_reports_real_numbers():
  assert flags.FLAGS.is_parsed()
  config = frame_autoencoder.get_config("tiny")
  result = bench.benchmark(config, steps=3, warmup=1)
  for key in ("train_compile_s", "train_step_ms", "train_samples_per_s", "inference_call_ms", "host_peak_rss_mib"):
    assert result[key] > 0, key
  assert result["num_devices"] == 1 or result["num_devices"] == 8
  assert abs(result["train_samples_per_s"] - config.batch_size / (result["train_step_ms"] / 1e3)) < 1e-3 * result["train_samples_per_s"]


def test_a_launch_on_a_held_workdir_fails_at_once_without_a_traceback(tmp_path):
  with workdir_lock.hold(tmp_path):
    result = run_train(tmp_path)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      f"train: {tmp_path} is in use: process {os.getpid()} on {socket.gethostname()} (since ")
  assert "Traceback" not in result.stderr and not (tmp_path / "config.json").exists()
