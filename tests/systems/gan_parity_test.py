"""Wav2Lip (plain and GAN) and SOVQAE tiny stages give the losses recorded before the stages
moved onto the shared adversarial step (`fixtures/gan_parity_before.json`, commit 3b8878d)."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

# Slow: three train-step compiles of 1-2 min each on a loaded 2-core machine (about 5 min
# alone, 10 under load).
pytestmark = pytest.mark.slow

# (run, metric name before the move) -> its name after, for metrics the move renames (e.g.
# ("wav2lip_gan", "adv_loss"): "visual/g_loss"); every recorded metric must be found.
RENAMED: dict[tuple[str, str], str] = {}

_SCRIPT = os.path.join(os.path.dirname(__file__), "fixtures", "record_gan_parity.py")
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _recorder():
  spec = importlib.util.spec_from_file_location("record_gan_parity", _SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_losses_match_the_pre_move_fixture(tmp_path):
  recorder = _recorder()
  with open(recorder.FIXTURE) as f:
    before = json.load(f)
  # One CPU device, as recorded (the script's docstring: device count changes the rounding).
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
      [_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]))
  out = str(tmp_path / "after.json")
  subprocess.run([sys.executable, _SCRIPT, out], env=env, check=True)
  with open(out) as f:
    after = json.load(f)
  assert sorted(after) == sorted(before) == sorted(recorder.RUNS)
  for run in recorder.RUNS:
    assert len(after[run]) == len(before[run]) == recorder.STEPS, run
    for step, (got, want) in enumerate(zip(after[run], before[run]), start=1):
      for name, value in want.items():
        new_name = RENAMED.get((run, name), name)
        assert new_name in got, (run, step, new_name, sorted(got))
        np.testing.assert_allclose(got[new_name], value, rtol=1e-5, atol=1e-7,
                                   err_msg=f"{run} step {step} {name}")
