"""Image grids and metric files."""

import json

import numpy as np

from talking_heads.training import writers
from tests.training import tensorboard_events


def test_image_grid_layout():
  images = np.zeros((5, 4, 6, 3), np.float32)
  images[3] = 1.0
  grid = writers.image_grid(images, pad=1)
  assert grid.shape == (2 * 5 + 1, 3 * 7 + 1, 3) and grid.dtype == np.uint8
  # Image 3 sits at row 1, column 0 and is white; image 0 is black.
  assert grid[1 + 5:1 + 5 + 4, 1:7].min() == 255
  assert grid[1:5, 1:7].max() == 0


def test_metric_writer_appends_jsonl_and_png(tmp_path):
  w = writers.MetricWriter(str(tmp_path))
  w.write_scalars(3, {"loss": np.float32(0.5)})
  w.write_images(3, {"recon/grid": np.ones((2, 4, 4, 3))})
  w.close()
  record = json.loads((tmp_path / "metrics.jsonl").read_text())
  assert record["step"] == 3 and record["loss"] == 0.5
  assert (tmp_path / "images" / "recon_grid_00000003.png").exists()
  assert list((tmp_path / "tensorboard").iterdir())


def test_images_never_share_a_tag_with_scalars(tmp_path):
  """TensorBoard shows a tag under the kind it saw first: an image named like a scalar (SOVQAE's
  `reconstruction` loss term and grid) would be hidden."""
  w = writers.MetricWriter(str(tmp_path))
  w.write_scalars(1, {"reconstruction": 0.5})
  w.write_images(1, {"reconstruction": np.ones((2, 4, 4, 3))})
  w.close()
  board = tensorboard_events.summaries(tmp_path / "tensorboard")
  assert board == {"reconstruction": {"scalar": [1]}, "images/reconstruction": {"image": [1]}}
