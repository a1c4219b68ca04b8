"""The frame autoencoder stage on a dataset in the project's format (not procedural frames)."""

import jax.numpy as jnp
import numpy as np

from experiments.configs import frame_autoencoder
from talking_heads.io.dataset import Dataset
from talking_heads.pipelines import testing
from talking_heads.systems.frame_autoencoder.stage import FrameAutoencoderStage
from talking_heads.training import loop
from tests.training import tensorboard_events


def test_trains_on_dataset_frames_and_weights_padded_eval_batches(tmp_path):
  root = tmp_path / "ds"
  testing.write_random_dataset(root, [30, 30, 20], image_size=32, splits=["train", "train", "val"])
  config = frame_autoencoder.get_config("tiny")
  config.data.root, config.data.eval_stride, config.data.image_size = str(root), 3, 32
  config.total_steps, config.eval_every, config.image_every = 8, 8, 8
  config.progress_bar = False
  result = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert len(result.history) == 8 and all(np.isfinite(h["loss"]) for h in result.history)

  # 20 val frames at stride 3 -> 7 frames, one batch of 8 with a padding row. The reported eval
  # PSNR must equal the mean over exactly those 7 frames.
  frames = Dataset(root).clips("val")[0].frames[::3].astype(np.float32) / 255.0
  assert len(frames) == 7
  stage = FrameAutoencoderStage(config)
  recon = stage.model.apply({"params": result.state.params}, jnp.asarray(frames))
  psnr = np.mean(-10 * np.log10(np.mean((np.asarray(recon) - frames) ** 2, axis=(1, 2, 3)) + 1e-10))
  np.testing.assert_allclose(result.eval_history[-1]["psnr"], psnr, rtol=1e-4)
  assert "eval_weight" not in result.eval_history[-1]

  # TensorBoard shows its eval curves and image grid (the main-job test checks the other stages).
  board = tensorboard_events.summaries(tmp_path / "run" / "tensorboard")
  assert board["eval/psnr"] == {"scalar": [8]}
  assert board["images/reconstruction"] == {"image": [8]}
