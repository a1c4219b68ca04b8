"""The test setup itself: fake devices whatever XLA_FLAGS holds."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).parents[1]


def _pytest(args: list[str], **env: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", *args],
                        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("xla_flags", [
    "",  # set but empty
    "--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=1"])
def test_sharding_test_sees_8_devices_with_xla_flags_preset(xla_flags):
  run = _pytest(["-q", "tests/training/sharding_test.py::test_batch_sharding_splits_over_both_axes"],
                XLA_FLAGS=xla_flags)
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
