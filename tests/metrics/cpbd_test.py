"""CPBD: parity with the `cpbd` package (when installed), hand-computed edge widths, properties."""

import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import skimage.filters

from talking_heads.metrics import cpbd


@pytest.fixture(scope="module")
def reference_cpbd():
  # cpbd 1.0.7 imports scipy.ndimage.imread (removed from scipy) for its command line only.
  patched = not hasattr(scipy.ndimage, "imread")
  if patched:
    scipy.ndimage.imread = None
  try:
    module = pytest.importorskip("cpbd")
  finally:
    if patched:
      del scipy.ndimage.imread
  return module.compute


def _grey(name: str) -> np.ndarray:
  image = getattr(skimage.data, name)()
  return cpbd.rgb_to_grey(image) if image.ndim == 3 else image


def _blurred(image: np.ndarray, sigma: float) -> np.ndarray:
  return skimage.filters.gaussian(image, sigma=sigma, preserve_range=True)


@pytest.mark.parity
@pytest.mark.parametrize("name, crop", [("camera", (slice(64, 320), slice(128, 384))),
                                        ("astronaut", (slice(0, 256), slice(128, 384))),
                                        ("coffee", (slice(100, 300), slice(150, 450)))])
@pytest.mark.parametrize("sigma", [0.0, 1.0, 2.5])
def test_matches_cpbd_package(reference_cpbd, name, crop, sigma):
  image = _grey(name)[crop]
  if sigma:
    image = _blurred(image, sigma)
  ours = cpbd.cpbd(image)
  assert ours == pytest.approx(reference_cpbd(image), abs=1e-3)


@pytest.mark.parity
def test_matches_cpbd_package_on_partial_blocks_and_flat_images(reference_cpbd):
  image = _grey("camera")[:150, :200]  # A partial last row/column of blocks is dropped.
  assert cpbd.cpbd(image) == pytest.approx(reference_cpbd(image), abs=1e-3)
  flat = np.full((128, 128), 77, np.uint8)  # No gradient at all: no widths, score 0.
  assert cpbd.cpbd(flat) == reference_cpbd(flat) == 0.0


def _ramp_image(start: int, end: int, width: int = 400, height: int = 8, decreasing: bool = False):
  """Rows of 0 up to column `start`, a strictly rising ramp to column `end`, then 200.

  The last row is nudged so that some gradient angle is non-zero (with every angle 0 the package
  measures no width at all); rows 0..5 keep horizontal gradients only.
  """
  row = np.clip((np.arange(width) - start) / (end - start), 0.0, 1.0) * 200.0
  row = row[::-1].copy() if decreasing else row
  image = np.tile(row, (height, 1))
  image[-1] += 1.0
  return image


@pytest.mark.parametrize("decreasing", [False, True])
def test_edge_width_of_a_ramp_is_its_length(decreasing):
  image = _ramp_image(100, 112, decreasing=decreasing)
  edges = np.zeros(image.shape, bool)
  col = 295 if decreasing else 105  # Inside the ramp (mirrored when decreasing: columns 288..299).
  edges[4, col] = True
  widths = cpbd.edge_widths(image, edges)
  # Left steps run back to the ramp start, right steps on to its end: (col - 100) + (112 - col).
  assert widths[4, col] == 12
  assert np.count_nonzero(widths) == 1


def test_edge_width_is_capped_at_101_steps_a_side():
  image = _ramp_image(0, 399)
  edges = np.zeros(image.shape, bool)
  edges[4, 200] = edges[4, 50] = True
  widths = cpbd.edge_widths(image, edges)
  assert widths[4, 200] == 101 + 101
  assert widths[4, 50] == 50 + 101


def test_no_width_when_every_gradient_angle_is_zero():
  # The package skips width measurement entirely when no raw angle is non-zero.
  image = _ramp_image(100, 112)
  image[-1] -= 1.0
  edges = np.zeros(image.shape, bool)
  edges[4, 105] = True
  assert not cpbd.edge_widths(image, edges).any()


def test_vertical_gradients_follow_the_package_angle_rule():
  # Intensity changing down the rows: with a slight slope along the rows the angle is ~90 degrees
  # and nothing is measured; with gx exactly 0 the package leaves the angle at 0 and measures the
  # (flat) row, width 1 + 1.
  rows = _ramp_image(100, 112)[:6].T.copy()  # [400, 6], rising down the rows.
  edges = np.zeros(rows.shape, bool)
  edges[105, 2] = True
  sloped = rows + 1e-3 * np.arange(rows.shape[1])
  assert not cpbd.edge_widths(sloped, edges).any()
  rows[:, -1] += 1.0  # Some non-zero angle elsewhere, so widths are measured at all.
  widths = cpbd.edge_widths(rows, edges)
  assert widths[105, 2] == 2 and np.count_nonzero(widths) == 1


def test_sharper_images_score_higher():
  image = _grey("camera")[:256, :256]
  scores = [cpbd.cpbd(_blurred(image, s)) if s else cpbd.cpbd(image) for s in (0.0, 1.0, 2.0, 4.0)]
  assert scores == sorted(scores, reverse=True)
  assert scores[0] > 0.5 and scores[-1] < 0.05


def test_rgb_to_grey_matches_pillow():
  pil_image = pytest.importorskip("PIL.Image")
  rgb = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
  rgb[0, :4] = [[255, 255, 255], [0, 0, 0], [255, 0, 0], [1, 2, 3]]
  np.testing.assert_array_equal(cpbd.rgb_to_grey(rgb), np.asarray(pil_image.fromarray(rgb).convert("L")))


def test_video_cpbd_is_the_frame_mean():
  frame = skimage.data.astronaut()[:128, 192:320]
  blurred = np.round(skimage.filters.gaussian(frame, sigma=1.5, channel_axis=-1, preserve_range=True)).astype(np.uint8)
  video = np.stack([np.stack([frame, blurred]), np.stack([blurred, blurred])])  # [2, 2, 128, 128, 3]
  per_frame = [cpbd.cpbd(cpbd.rgb_to_grey(f)) for f in (frame, blurred)]
  np.testing.assert_allclose(cpbd.video_cpbd(video), [np.mean(per_frame), per_frame[1]], rtol=1e-12)
  np.testing.assert_allclose(cpbd.video_cpbd(video[0]), np.mean(per_frame), rtol=1e-12)


def test_bad_input_is_rejected():
  with pytest.raises(ValueError, match="64x64"):
    cpbd.cpbd(np.zeros((63, 200)))
  with pytest.raises(ValueError, match=r"\[0, 255\]"):
    cpbd.cpbd(np.full((64, 64), 300.0))
  with pytest.raises(ValueError, match="grey image"):
    cpbd.cpbd(np.zeros((64, 64, 3)))
  with pytest.raises(ValueError, match="uint8"):
    cpbd.rgb_to_grey(np.zeros((4, 4, 3), np.float32))
