"""Results JSON: non-finite values survive a write and a read; a results command's ending."""

import json
import math

import numpy as np

from talking_heads.io import reports


def test_non_finite_values_round_trip_through_json():
  results = {"psnr": np.float32(np.inf), "floor": -math.inf, "lse": [float("nan"), 0.5],
             "steps": np.int64(3), "name": "id01"}
  loaded = reports.from_json(json.loads(json.dumps(reports.to_json(results))))
  assert loaded["psnr"] == math.inf and loaded["floor"] == -math.inf
  assert math.isnan(loaded["lse"][0]) and loaded["lse"][1] == 0.5
  assert loaded["steps"] == 3 and loaded["name"] == "id01"


def test_timed_results_stamps_writes_and_prints(tmp_path, capsys):
  out = tmp_path / "sub" / "table.json"
  results = reports.timed_results(out, lambda: {"psnr": float("inf"), "rows": (1, 2)},
                                  lambda r: f"# table\n\nPSNR {r['psnr']}\n")
  assert {"command", "machine", "duration_s"} <= set(results) and results["duration_s"] >= 0
  assert reports.read_json(out)["psnr"] == float("inf")          # JSON-safe, read back
  assert out.with_suffix(".md").read_text() == "# table\n\nPSNR inf\n"
  assert "PSNR inf" in capsys.readouterr().out
