r"""How strongly a diffusion autoencoder's prediction follows its semantic latent, per noise level.

  python -m experiments.dae_talker.latent_response --dataset=/tmp/demo_corpus --identity=id01 \
      --workdirs=runs/dae_demo,runs/dae_demo_v --out=experiments/results/dae_talker_demo/latent_response.json

For frame pairs (A, B) of the identity's train clips that differ most in mouth opening and in
yaw, the same noisy x_t of A at timestep t is given A's latent and B's: the mean absolute
difference of the two x0 predictions (grey levels, 0-255), as a fraction of the true |A - B|, is
the latent's share in the prediction at that noise level. DDIM decoding from a random x_T lays
out pose and mouth during the high-noise steps, so a model whose response is small there decodes
any latent to nearly the same face. Each workdir is read at its newest checkpoint (or
`--steps`), with its training (non-EMA) parameters.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from talking_heads.io import reports

from talking_heads.diffusion import parameterization as param
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import base
from talking_heads.systems.images import to_model_range
from talking_heads.training import restore

FLAGS = flags.FLAGS
TIMESTEPS = (999, 800, 600, 400, 200, 50)


def define_flags() -> None:
  flags.DEFINE_string("dataset", None, "Corpus root.")
  flags.DEFINE_string("identity", "id01", "Identity whose train clips give the frame pairs.")
  flags.DEFINE_list("workdirs", None, "DAE workdirs to compare.")
  flags.DEFINE_list("steps", [], "Checkpoint step per workdir (default: newest).")
  flags.DEFINE_integer("clips", 4, "Train clips (one mouth pair and one yaw pair each).")
  flags.DEFINE_integer("seed", 0, "Noise seed.")
  flags.DEFINE_string("out", None, "JSON output path.")
  flags.mark_flags_as_required(["dataset", "workdirs", "out"])


def frame_pairs(dataset: str, identity: str, clips: int, size: int
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{"mouth", "yaw"} -> (A [N, S, S, 3], B [N, S, S, 3]) uint8: per clip, the frames with the
  smallest and largest mouth opening (inner-lip gap) and yaw."""
  ds = dataset_lib.Dataset(dataset)
  own = [c for c in ds.clips(split="train") if c.identity == identity]
  if len(own) < clips:
    raise ValueError(f"{dataset}: identity {identity!r} has {len(own)} train clips, "
                     f"need {clips}")
  pairs = {"mouth": ([], []), "yaw": ([], [])}
  for clip in own[:clips]:
    gap = np.linalg.norm(clip.landmarks[:, 66] - clip.landmarks[:, 62], axis=-1)       # [T]
    frames = np.asarray(base.resize_frames(clip.frames, size))                        # uint8
    for key, values in (("mouth", gap), ("yaw", clip.pose[:, 0])):
      pairs[key][0].append(frames[int(np.argmin(values))])
      pairs[key][1].append(frames[int(np.argmax(values))])
  return {k: (np.stack(a), np.stack(b)) for k, (a, b) in pairs.items()}


def latent_response(workdir: str, step: int | None, dataset: str, identity: str, clips: int,
                    seed: int) -> dict[str, Any]:
  stage, state, step = restore.restore_stage(workdir, step)
  variables = {"params": state.params, **state.model_state}
  prediction = stage.config.diffusion.prediction
  pairs = frame_pairs(dataset, identity, clips, stage.image_size)

  @jax.jit
  def x0_difference(a: jax.Array, b: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    z_a, z_b = stage.encode(variables, a), stage.encode(variables, b)                 # [N, Z]
    x_t = param.q_sample(stage.schedule, to_model_range(a), t, noise)
    abar = stage.schedule.alphas_cumprod[t]                                          # [N]
    x0 = [jnp.clip(param.to_x0_eps(prediction, stage.model.apply(variables, x_t, t, z=z),
                                   x_t, abar)[0], -1, 1) for z in (z_a, z_b)]
    return jnp.mean(jnp.abs(x0[0] - x0[1])) * 127.5

  rows = {}
  for key, (a, b) in pairs.items():
    true = float(np.mean(np.abs(a.astype(np.float32) - b.astype(np.float32))))
    noise = jax.random.normal(jax.random.PRNGKey(seed), a.shape, jnp.float32)
    rows[key] = {"true_difference": true, "by_timestep": {}}
    for t in TIMESTEPS:
      d = float(x0_difference(a, b, jnp.full((a.shape[0],), t, jnp.int32), noise))
      rows[key]["by_timestep"][str(t)] = {"difference": d, "fraction": d / true}
  return {"workdir": workdir, "step": int(step), "prediction": prediction,
          "latent_centering": bool(stage.config.model.get("latent_centering", False)),
          "pairs": rows}


def markdown(results: list[dict[str, Any]]) -> str:
  head = " | ".join(f"t = {t}" for t in TIMESTEPS)
  lines = [f"| run | step | prediction | centred | pair | {head} |",
           "|---|---|---|---|---|" + "---|" * len(TIMESTEPS)]
  for r in results:
    for key, row in r["pairs"].items():
      cells = " | ".join(f"{row['by_timestep'][str(t)]['fraction']:.2f}" for t in TIMESTEPS)
      lines.append(f"| {r['workdir']} | {r['step']} | {r['prediction']} | "
                   f"{'yes' if r['latent_centering'] else 'no'} | {key} | {cells} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  steps = [int(s) if s else None for s in FLAGS.steps] or [None] * len(FLAGS.workdirs)
  if len(steps) != len(FLAGS.workdirs):
    raise ValueError(f"--steps gives {len(steps)} steps for {len(FLAGS.workdirs)} workdirs")
  start = time.perf_counter()
  results = [latent_response(w, s, FLAGS.dataset, FLAGS.identity, FLAGS.clips, FLAGS.seed)
             for w, s in zip(FLAGS.workdirs, steps)]
  out = {"command": reports.command_line(), "machine": reports.machine_description(),
         "seconds": time.perf_counter() - start, "results": results}
  reports.write_results(FLAGS.out, out, markdown(results))
  print(markdown(results))


if __name__ == "__main__":
  define_flags()
  app.run(main)
