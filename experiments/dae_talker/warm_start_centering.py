r"""Continues a diffusion-autoencoder run with latent centring, from a checkpoint trained without it.

  python -m experiments.dae_talker.warm_start_centering --from_workdir=runs/dae_demo_step4300 \
      --workdir=runs/dae_demo_centred --frames=512
  python -m experiments.train --config=experiments/configs/dae_talker/dae.py:demo \
      --config.data.root=/tmp/demo_corpus --workdir=runs/dae_demo_centred

`models.dae.ConditionalUNet(latent_centering=True)` projects SiLU(z) - m instead of SiLU(z). The
new checkpoint computes the same function as the old one: m is the mean of SiLU(z) over
`--frames` training frames (EMA encoder) and every latent projection's bias absorbs m's share,
b' = b + m @ W, for the trained and the EMA parameters alike. Step, optimiser moments and the data
iterator's position carry over, so the next `experiments.train` in `--workdir` resumes the run.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging

from talking_heads.models import dae
from talking_heads.training import registry
from talking_heads.training.checkpoint import Checkpointer
from talking_heads.training.loop import config_to_dict, record_config
from talking_heads.training.restore import load_config, trained_step

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("from_workdir", None, "DAE run trained without latent centring.")
  flags.DEFINE_string("workdir", None, "New workdir (must not hold checkpoints).")
  flags.DEFINE_integer("frames", 512, "Training frames that estimate the mean of SiLU(z).")
  flags.mark_flags_as_required(["from_workdir", "workdir"])


def warm_start(from_workdir: str, workdir: str, frames: int) -> dict[str, Any]:
  if os.path.isdir(os.path.join(workdir, "checkpoints")) and os.listdir(
      os.path.join(workdir, "checkpoints")):
    raise FileExistsError(f"{workdir} already holds checkpoints")
  old_config = load_config(from_workdir, expected_stage="dae")
  old_checkpoints = Checkpointer(from_workdir, async_save=False)
  trained_step(old_checkpoints, from_workdir)
  if old_config.model.get("latent_centering", False):
    raise ValueError(f"{from_workdir} already centres its latent")
  new_config = ml_collections.ConfigDict(old_config.to_dict())
  new_config.model.latent_centering = True
  old_stage, new_stage = registry.build(old_config), registry.build(new_config)

  data = old_stage.train_iterator(old_config.batch_size, 0, 1)
  abstract = jax.eval_shape(old_stage.init_state, jax.random.PRNGKey(0))
  step, state = old_checkpoints.restore(abstract, data_iterator=data)
  old_checkpoints.close()

  # The centre from training frames drawn by a separate iterator (the run's own stays in place).
  sample = old_stage.train_iterator(frames, 0, 1)
  images = jnp.asarray(next(iter(sample))["image"])
  z = jax.jit(old_stage.encode)(old_stage.variables(state), images)
  centre = jnp.mean(jax.nn.silu(z), axis=0)                                    # [Z]

  new_state = state.replace(
      params=dae.fold_latent_centre(state.params, centre),
      ema_params=dae.fold_latent_centre(state.ema_params, centre),
      model_state={"latent_stats": {"unet": {"silu_mean": centre}}})
  expected = jax.eval_shape(new_stage.init_state, jax.random.PRNGKey(0))
  fields = lambda s: (s.params, s.opt_state, s.model_state, s.ema_params)   # not the static tx
  if jax.tree_util.tree_structure(fields(expected)) != jax.tree_util.tree_structure(
      fields(new_state)):
    raise RuntimeError("converted state does not match the centred stage's state")

  # Same function: the new model reproduces the old one's predictions.
  x_t = jax.random.normal(jax.random.PRNGKey(1), images[:4].shape, jnp.float32)
  t = jnp.array([10, 300, 600, 900])
  old_out = old_stage.model.apply(old_stage.variables(state), x_t, t, z=z[:4])
  new_out = new_stage.model.apply(new_stage.variables(new_state), x_t, t, z=z[:4])
  max_diff = float(jnp.max(jnp.abs(old_out - new_out)))
  if max_diff > 1e-3:
    raise RuntimeError(f"the centred model departs from the old one by {max_diff}")

  checkpoints = Checkpointer(workdir, async_save=False)
  config_dict = config_to_dict(new_config)
  checkpoints.save(step, new_state, data_iterator=data, config=config_dict)
  checkpoints.close()
  record_config(workdir, config_dict, int(step))
  return {"step": int(step), "max_output_difference": max_diff,
          "centre_norm": float(jnp.linalg.norm(centre)),
          "latent_spread": float(np.mean(np.std(np.asarray(z), axis=0)))}


def main(argv):
  del argv
  info = warm_start(FLAGS.from_workdir, FLAGS.workdir, FLAGS.frames)
  logging.info("Centred checkpoint written to %s: %s", FLAGS.workdir, info)
  print(json.dumps(info))


if __name__ == "__main__":
  define_flags()
  app.run(main)
