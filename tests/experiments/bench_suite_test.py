"""experiments.bench_suite: every stage's upstream workdirs and every generation entry's weights
are declared (fast), and its tiny run covers every registered stage and entry with complete rows
(`bench`: experiments/test_bench.sh, a CI step of its own)."""

import json
import os

import pytest

from experiments import bench
from experiments import bench_suite
from experiments import main as main_job
from talking_heads.systems import api


def test_every_upstream_workdir_field_is_declared():
  for stage in api.stage_paths():
    config = main_job.stage_config(stage, "tiny", "/nonexistent")
    for path in bench_suite.workdir_fields(config):
      assert path in bench_suite.UPSTREAM, (stage, path)
  assert set(bench_suite.UPSTREAM.values()) <= set(api.stage_paths())


def test_every_generation_weight_is_a_stage():
  for entry in api.generators().values():
    for name in entry.weights:
      if name.endswith("_workdir"):
        stage, _ = bench_suite.GENERATOR_WEIGHTS[name]
        assert stage in api.stage_paths(), (entry.name, name)


def test_part_shares_add_up_to_one():
  summary = {"seconds": {"load": 5.0, "generate": 10.0, "source": 1.0, "wav2lip": 6.0,
                         "wav2lip_first_batch": 4.0, "paste": 1.0}}
  shares = bench_suite.part_shares(summary)
  assert shares == pytest.approx({"source": 0.1, "wav2lip": 0.6, "paste": 0.1,
                                  "encode_and_other": 0.2})


def test_peak_flops_by_device_and_dtype():
  assert bench.peak_flops("NVIDIA H100 80GB HBM3", "bfloat16") == 989e12
  assert bench.peak_flops("NVIDIA H100 PCIe", "float32") == 378e12
  assert bench.peak_flops("TPU v5 lite", "bfloat16") == 197e12
  assert bench.peak_flops("cpu", "float32") is None


@pytest.mark.bench
def test_tiny_suite_covers_every_stage_and_system(tmp_path):
  results = bench_suite.run("tiny", None, None, steps=2, warmup=1, audio_seconds=1.0,
                            batch_size=8, work_dir=str(tmp_path / "work"),
                            out_dir=str(tmp_path / "out"))
  assert sorted(r["stage"] for r in results["stages"]) == sorted(api.stage_paths())
  assert sorted(r["system"] for r in results["systems"]) == sorted(api.generators())
  for row in results["stages"] + results["systems"]:
    assert "error" not in row, row
  for row in results["stages"]:
    for key in ("train_compile_s", "train_step_ms", "train_step_ms_p90", "train_samples_per_s",
                "train_flops_per_device", "data_wait_fraction", "train_compiled_temp_mib"):
      assert isinstance(row[key], float) and row[key] >= 0, (row["stage"], key)
    assert row["train_mfu"] is None   # no peak for a CPU
    assert (row["state_mib_per_device_fsdp4"] <= row["state_mib_per_device_fsdp2"]
            <= row["state_mib_per_device_fsdp1"]), row["stage"]
  for row in results["systems"]:
    assert row["frames"] == 25 and row["frames_per_s"] > 0, row
    assert sum(row["shares"].values()) == pytest.approx(1.0)
  with open(tmp_path / "out" / "bench_tiny.json") as f:
    assert json.load(f) == json.loads(json.dumps(results))
  text = (tmp_path / "out" / "bench_tiny.md").read_text()
  assert all(f"| {stage} |" in text for stage in api.stage_paths())
  assert os.path.getsize(tmp_path / "out" / "bench_tiny.md") > 0
