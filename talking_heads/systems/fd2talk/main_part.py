"""FD2Talk's part of the main job: the four stages on every training identity of the corpus (the
lip expert, the Exp Transformer against it, the Pose Transformer, the frame autoencoder and the
latent UNet in its latent space), a held-out-voice video (a one-shot reference, the head pose
sampled from the audio) and Table 1 at small scale with stage 1's checks (`evaluation`).

Steps: each stage trains its config of the variant as it is (the demo configs are sized for this
part's 25 minutes on 2 free cores; their docstrings give the measured durations).

Tables 2 and 3 need four more trainings (the joint DiT, the concatenated-conditions UNet, the
Exp Transformer without the mask and without L_sync): they are left to
`python -m experiments.fd2talk.tables` with those workdirs (its docstring has the overrides).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from talking_heads.io import dataset as dataset_lib
from talking_heads.io import html_report
from talking_heads.pipelines import base as pipelines_base
from talking_heads.systems import main_part
from talking_heads.systems import video_inference
from talking_heads.systems.api import MainContext, PartReport
from talking_heads.systems.fd2talk import evaluation
from talking_heads.systems.fd2talk import inference

# Small-scale evaluation per variant: clips per set, frames per clip, DDIM steps, seeds.
EVAL_SETTINGS = {"tiny": dict(clips=1, frames=12, ddim_steps=2, seeds=2),
                 "demo": dict(clips=2, frames=40, ddim_steps=20, seeds=3)}


def video(ctx: MainContext, out: str, model: inference.FD2TalkModel,
          settings: dict[str, Any]) -> dict[str, Any]:
  """The identity's first held-out-voice clip regenerated from its first frame and its audio
  (the head pose sampled from the audio)."""
  clip = next(c for c in dataset_lib.Dataset(ctx.corpus_root).clips("heldout_voice")
              if c.identity == ctx.identity)
  face = pipelines_base.resize_frames(np.asarray(clip.frames[:1]), model.image_size)
  options = video_inference.Options(box="full", batch_size=16, chunk_frames=16)
  start = time.perf_counter()
  result = inference.run_arrays(model, np.asarray(clip.audio, np.float32), face,
                                inference.Settings(seed=0), options, audio_id=clip.id,
                                face_id=f"{clip.id} frame 0")
  seconds = time.perf_counter() - start
  path = os.path.join(out, "fd2talk_heldout_voice.mp4")
  video_inference.write_mp4(path, result)
  return {"identity": ctx.identity, "audio_clip": clip.id,
          "video": os.path.relpath(path, ctx.workdir), "frames": int(result.frames.shape[0]),
          "ddim_steps": settings["ddim_steps"],
          "frames_per_second": round(result.frames.shape[0] / seconds, 2)}


def run(ctx: MainContext) -> PartReport:
  out = ctx.system_dir("fd2talk")
  workdirs = {name: os.path.join(out, name)
              for name in ("lip_expert", "expression", "pose", "autoencoder", "unet")}
  expert = ctx.config("fd2talk_lip_expert")
  expression = ctx.config("fd2talk_motion")
  expression.lip_expert.workdir = workdirs["lip_expert"]
  pose = ctx.config("fd2talk_motion")
  pose.model.motion = "pose"
  autoencoder = ctx.config("fd2talk_autoencoder")
  unet = ctx.config("fd2talk_unet")
  unet.autoencoder.workdir = workdirs["autoencoder"]
  # Progress spans: the demo run's measured shares of the part's time.
  plan = [("FD2Talk lip expert", expert, "lip_expert", (0.0, 0.08)),
          ("FD2Talk Exp Transformer (L_sync on the lip expert)", expression, "expression",
           (0.08, 0.18)),
          ("FD2Talk Pose Transformer", pose, "pose", (0.18, 0.26)),
          ("FD2Talk frame autoencoder", autoencoder, "autoencoder", (0.26, 0.62)),
          ("FD2Talk latent UNet", unet, "unet", (0.62, 0.94))]
  trainings = [main_part.train(ctx, title, config, workdirs[name], span=span)
               for title, config, name, span in plan]

  settings = EVAL_SETTINGS[ctx.variant]
  model = inference.load(workdirs["expression"], workdirs["pose"], workdirs["unet"],
                         steps=settings["ddim_steps"])
  syncnet_workdir = ctx.artefacts["syncnet_workdir"]
  sync_eval_workdir = ctx.artefacts.get("sync_eval_workdir", "")
  sources = {**model.sources, "syncnet": syncnet_workdir, "sync_eval": sync_eval_workdir}
  path = os.path.join(out, "fd2talk_tables.json")
  tables = main_part.cached_tables(
      ctx, path, sources, video=(0.94, "FD2Talk video", lambda: video(ctx, out, model, settings)),
      tables=(0.96, "FD2Talk Table 1", lambda: evaluation.run(
          ctx.corpus_root, evaluation.Workdirs(workdirs["expression"], workdirs["pose"],
                                               workdirs["unet"]),
          syncnet_workdir=syncnet_workdir, sync_eval_workdir=sync_eval_workdir, **settings)),
      markdown=evaluation.markdown, function="talking_heads.systems.fd2talk.evaluation.run")
  made = tables["video"]
  lines = main_part.training_table(trainings) + [
      "", f"Identity {made['identity']}: [video]({made['video']}) from the first frame and the "
      f"held-out-voice audio of {made['audio_clip']} ({made['frames']} frames, "
      f"{made['ddim_steps']} DDIM steps, head pose sampled from the audio, "
      f"{made['frames_per_second']} frames/s). Table 1 at small scale (fd2talk/fd2talk_tables.md; "
      "Tables 2 and 3 need separately trained ablations: `python -m experiments.fd2talk.tables`):",
      "", evaluation.markdown(tables)]
  pair = html_report.VideoPair(
      f"FD2Talk: {made['identity']} from the first frame and the held-out voice of "
      f"{made['audio_clip']}", made["video"], main_part.truth_video(
          ctx, dataset_lib.Dataset(ctx.corpus_root).clip(made["audio_clip"])),
      f"{made['frames']} frames, {made['ddim_steps']} DDIM steps, the head pose sampled from the "
      f"speech; beside it {made['audio_clip']} as rendered by the corpus (the same speech).")
  summary = {"video": made, "table_1": {
      split: {row: {k: v for k, v in values.items() if k != "per_clip"}
              for row, values in s["rows"].items()} for split, s in tables["sets"].items()}}
  return PartReport(markdown="\n".join(lines) + "\n", summary=summary, trainings=trainings,
                    videos=[pair])
