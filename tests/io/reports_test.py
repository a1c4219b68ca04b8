"""Results JSON: non-finite values survive a write and a read."""

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
