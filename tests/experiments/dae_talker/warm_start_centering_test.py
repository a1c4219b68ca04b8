"""experiments.dae_talker.warm_start_centering: an uncentred DAE run continues centred, same function,
same step and data position; a centred run, an untrained run or a used workdir is refused."""

import re

import numpy as np
import pytest

from experiments.configs.dae_talker import dae as dae_config
from experiments.dae_talker import warm_start_centering as warm
from talking_heads.pipelines import testing
from talking_heads.training import loop, restore

# Slow: two tiny DAE trainings and a restore compile for minutes on 2 shared cores.
@pytest.mark.slow
def test_warm_start_then_resume(tmp_path):
  root = tmp_path / "ds"
  testing.write_random_dataset(root, [16, 16], image_size=16, splits=["train", "train"])
  config = dae_config.get_config("tiny")
  config.data.update(root=str(root), eval_split="train")
  config.model.latent_centering = False
  config.update(total_steps=2, checkpoint_every=2, eval_every=0, image_every=0,
                progress_bar=False)
  loop.train_and_evaluate(config, str(tmp_path / "plain"))

  info = warm.warm_start(str(tmp_path / "plain"), str(tmp_path / "centred"), frames=8)
  assert info["step"] == 2 and info["max_output_difference"] < 1e-3 and info["centre_norm"] > 0
  stage, state, step = restore.restore_stage(str(tmp_path / "centred"))
  assert step == 2 and stage.config.model.latent_centering
  centre = np.asarray(state.model_state["latent_stats"]["unet"]["silu_mean"])
  np.testing.assert_allclose(np.linalg.norm(centre), info["centre_norm"], rtol=1e-5)

  config.model.latent_centering = True
  config.total_steps = 4
  resumed = loop.train_and_evaluate(config, str(tmp_path / "centred"))
  assert resumed.step == 4 and all(np.isfinite(h["loss"]) for h in resumed.history)

  with pytest.raises(ValueError, match="already centres"):
    warm.warm_start(str(tmp_path / "centred"), str(tmp_path / "again"), frames=8)
  with pytest.raises(FileExistsError, match="already holds checkpoints"):
    warm.warm_start(str(tmp_path / "plain"), str(tmp_path / "centred"), frames=8)


def test_an_untrained_run_is_refused(tmp_path, untrained_workdir):
  config = dae_config.get_config("tiny")
  config.model.latent_centering = False
  workdir = untrained_workdir(config)
  with pytest.raises(restore.UntrainedWorkdirError, match=rf"{re.escape(workdir)} was never trained"):
    warm.warm_start(workdir, str(tmp_path / "centred"), frames=8)
