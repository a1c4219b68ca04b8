"""The noise-tolerance (experiments.ladtalk.noise_tolerance) and Fig. 2 (experiments.ladtalk.denoise_regions)
commands end to end on a SOVQAE workdir of the tiny config, plus the region sampling and the
strength calibration of the Fig. 2 experiment."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.ladtalk import sovqae as sovqae_config
from experiments.ladtalk import denoise_regions
from experiments.ladtalk import noise_tolerance as nt_command
from talking_heads.pipelines import frames as frames_pipeline
from talking_heads.pipelines import testing as pipeline_testing
from talking_heads.systems.ladtalk import noise_tolerance as nt
from talking_heads.systems.ladtalk.sovqae import SOVQAEStage
from talking_heads.training.checkpoint import Checkpointer

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _random_leaf(rng):
  def leaf(path, x):
    name = getattr(path[-1], "key", getattr(path[-1], "name", None))
    if not jnp.issubdtype(x.dtype, jnp.floating):
      return jnp.zeros(x.shape, x.dtype)
    if name == "kernel":
      return jnp.asarray(rng.normal(size=x.shape) / np.sqrt(np.prod(x.shape[:-1])), x.dtype)
    if name == "codebook":
      return jnp.asarray(rng.uniform(-1.0, 1.0, x.shape), x.dtype)
    return jnp.full(x.shape, 1.0 if name in ("scale", "var") else 0.0, x.dtype)
  return leaf


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A sovqae.py:tiny workdir (identity id0, 32 px) on a random dataset, holding a random state
  (a compiled init or training step costs a minute on a busy 2-core CPU)."""
  base = tmp_path_factory.mktemp("sovqae")
  data = base / "data"
  pipeline_testing.write_random_dataset(data, [10, 10, 8, 8], image_size=32, seed=0,
                                        splits=["train", "train", "test", "test"])
  config = sovqae_config.get_config("tiny")
  config.data.root = str(data)
  stage = SOVQAEStage(config)
  abstract = jax.eval_shape(stage.init_state, jax.random.PRNGKey(0))
  state = jax.tree_util.tree_map_with_path(_random_leaf(np.random.default_rng(0)), abstract)
  work = base / "work"
  work.mkdir()
  (work / "config.json").write_text(json.dumps(config.to_dict()))
  checkpointer = Checkpointer(str(work), async_save=False)
  checkpointer.save(3, state)
  checkpointer.close()
  return work, state.eval_params


def run_command(module, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  result = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def test_noise_tolerance_command(workdir, tmp_path):
  work, params = workdir
  out = tmp_path / "nt"
  run_command("experiments.ladtalk.noise_tolerance", f"--workdir={work}", f"--out={out}", "--frames=4",
              "--train_frames=6", "--calibration=2", "--blur_sigmas=0,2",
              "--noise_stds=0,30", "--power_iters=0", "--seed=3")
  results = json.loads((out / "noise_tolerance.json").read_text())
  assert results["identity"] == "id0" and results["split"] == "test" and results["step"] == 3
  assert results["num_eval_frames"] == 4 and results["num_train_frames"] == 6
  assert results["eval_frames"][0] == "clip002:0"          # id0's test clip
  assert results["d_c"] == pytest.approx(
      nt.min_codebook_distance(params["quantizer"]["codebook"])[0])
  assert results["radius"] == pytest.approx(
      (results["d_c"] - 2 * results["gamma_train"]) / (2 * results["lipschitz"]["bound"]))
  rows = results["rows"]
  assert [(r["kind"], r["strength"]) for r in rows] == [
      ("blur", 0.0), ("blur", 2.0), ("noise", 0.0), ("noise", 30.0)]
  assert rows[0]["unchanged_fraction"] == 1.0 and rows[3]["unchanged_fraction"] < 1.0
  report = (out / "noise_tolerance.md").read_text()
  assert "python -m experiments.ladtalk.noise_tolerance" in report and "seed: 3" in report
  assert "| encoder/mid_attn | attention |" in report and "| noise | std 30 |" in report


def test_denoise_regions_command(workdir, tmp_path):
  work, params = workdir
  out = tmp_path / "fig2"
  run_command("experiments.ladtalk.denoise_regions", f"--workdir={work}", f"--out={out}", "--frames=4",
              "--noise_std=25", "--sweep_blur=1", "--sweep_noise=10,40", "--seed=1")
  results = json.loads((out / "denoise_regions.json").read_text())
  assert results["region_side"] == 24 and len(results["frames"]) == 4
  blur, noise = results["blur"], results["noise"]
  assert blur["calibrated"] and not noise["calibrated"] and noise["strength"] == 25.0
  assert abs(blur["degraded_psnr"] - denoise_regions.PAPER_DEGRADED_PSNR["blur"]) < 0.01
  assert blur["gain_db"] == pytest.approx(blur["output_psnr"] - blur["degraded_psnr"], abs=1e-4)
  # The region holds all the error: its PSNR is 10 log10((32 / 24)^2) = 2.50 dB below the frame's.
  np.testing.assert_allclose(noise["per_frame"]["region_degraded_psnr"],
                             np.array(noise["per_frame"]["degraded_psnr"]) - 2.4988, atol=1e-3)
  assert [(r["kind"], r["strength"]) for r in results["sweep"]] == [
      ("blur", 1.0), ("noise", 10.0), ("noise", 40.0)]
  # The ceiling is the stage's own reconstruction of the clean frames.
  stage_frames, _ = nt_command.identity_frames(results["dataset"], "test", "id0", 32, 4)
  stage = SOVQAEStage(sovqae_config.get_config("tiny"))
  recon, _ = stage.reconstruct(params, jnp.asarray(stage_frames))
  ceiling = denoise_regions.psnr(np.asarray(recon), stage_frames / 255.0)
  np.testing.assert_allclose(results["ceiling_per_frame"], ceiling, rtol=1e-4)
  assert (out / "denoise_regions.png").stat().st_size > 0
  assert "| blur | sigma" in (out / "denoise_regions.md").read_text()


def test_regions_are_seeded_squares_inside_the_frame():
  regions, seeds = denoise_regions.sample_regions(50, 128, seed=4)
  assert {r[2:] for r in regions} == {(96, 96)}
  assert all(0 <= t <= 32 and 0 <= l <= 32 for t, l, _, _ in regions)
  assert (regions, seeds) == denoise_regions.sample_regions(50, 128, seed=4)
  assert regions != denoise_regions.sample_regions(50, 128, seed=5)[0]
  frames = np.random.default_rng(0).integers(0, 256, (2, 128, 128, 3)).astype(np.uint8)
  noisy = denoise_regions.degrade_regions(frames, "noise", 20.0, regions[:2], seeds[:2])
  for frame, out, (t, l, h, w) in zip(frames, noisy, regions):
    outside = np.ones(frame.shape[:2], bool)
    outside[t:t + h, l:l + w] = False
    np.testing.assert_array_equal(out[outside], frame[outside])
    assert np.mean(out[t:t + h, l:l + w] != frame[t:t + h, l:l + w]) > 0.9


@pytest.mark.parametrize("kind, target", [("blur", 30.26), ("noise", 16.08)])
def test_calibration_reaches_the_paper_psnr(kind, target):
  rng = np.random.default_rng(0)
  coarse = rng.integers(0, 256, (3, 16, 16, 3)).astype(np.float32)
  frames = np.stack([np.rint(frames_pipeline.gaussian_blur(np.kron(f, np.ones((4, 4, 1))), 1.0))
                     for f in coarse]).astype(np.uint8)
  regions, seeds = denoise_regions.sample_regions(3, 64, seed=0)
  strength, value = denoise_regions.calibrate(frames, kind, target, regions, seeds)
  assert abs(value - target) < 0.01
  degraded = denoise_regions.degrade_regions(frames, kind, strength, regions, seeds)
  assert np.mean(denoise_regions.psnr(degraded / 255.0, frames / 255.0)) == pytest.approx(value)


def test_strength_flags():
  assert denoise_regions.parse_strength("blur_sigma", "auto") is None
  assert denoise_regions.parse_strength("noise_std", "12.5") == 12.5
  for bad in ("0", "-1", "strong"):
    with pytest.raises(ValueError, match="--noise_std must be 'auto' or a positive number"):
      denoise_regions.parse_strength("noise_std", bad)
