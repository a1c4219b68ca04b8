"""DAE-Talker's part of the main job: the diffusion autoencoder on the identity, its per-frame
latents, speech2latent on pseudo-sentences of them, the face regressor its tables need (a shared
expert, kept in the experts' folder), a held-out-voice video (DDIM from one shared x_T) and
Tables 1-4 at small scale (`evaluation`)."""

from __future__ import annotations

import os
import time
from typing import Any

from absl import logging

from talking_heads.audio import windows
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import html_report
from talking_heads.io import video as video_io
from talking_heads.systems import main_part
from talking_heads.systems.api import MainContext, PartReport
from talking_heads.systems.dae_talker import evaluation
from talking_heads.systems.dae_talker import inference
from talking_heads.systems.dae_talker import latents as dae_latents

# Small-scale evaluation per variant: clips per test set, frames per clip, DDIM steps.
EVAL_SETTINGS = {"tiny": dict(clips=1, frames=12, sample_steps=2, recon_stride=8),
                 "demo": dict(clips=1, frames=40, sample_steps=25, recon_stride=16)}


def video(ctx: MainContext, out: str, model: inference.DAETalkerModel,
          sample_steps: int) -> dict[str, Any]:
  """The identity driven by held-out-voice audio, every frame decoded from one shared x_T."""
  audio = next(c for c in dataset_lib.Dataset(ctx.corpus_root).clips("heldout_voice")
               if c.identity == ctx.identity)
  start = time.perf_counter()
  result = inference.run_arrays(model, audio.audio, inference.Options(sample_steps=sample_steps),
                                audio_id=audio.id)
  seconds = time.perf_counter() - start
  path = os.path.join(out, "dae_talker_heldout_voice.mp4")
  video_io.write_video_with_audio(path, result.frames, result.audio, fps=result.fps,
                                  sample_rate=windows.SAMPLE_RATE)
  return {"identity": ctx.identity, "audio_clip": audio.id,
          "video": os.path.relpath(path, ctx.workdir), "frames": int(result.frames.shape[0]),
          "sample_steps": sample_steps,
          "frames_per_second": round(result.frames.shape[0] / seconds, 2)}


def run(ctx: MainContext) -> PartReport:
  out = ctx.system_dir("dae_talker")
  dae_workdir = os.path.join(out, "dae")
  dae = ctx.config("dae")
  dae.data.identities = ctx.identity
  trainings = [main_part.train(ctx, f"DAE-Talker diffusion autoencoder ({ctx.identity})", dae,
                               dae_workdir, span=(0.0, 0.55))]
  latents_name = f"dae_{os.path.basename(ctx.workdir)}"
  encoded = dae_latents.encode_clips(ctx.corpus_root, latents_name,
                                     dae_latents.load_dae_encoder(dae_workdir),
                                     identities=[ctx.identity])
  logging.info("DAE latents: %d clips written, %d already there", len(encoded.written),
               len(encoded.skipped))
  s2l_workdir = os.path.join(out, "speech2latent")
  s2l = ctx.config("speech2latent")
  s2l.data.identities, s2l.data.latents = ctx.identity, latents_name
  trainings.append(main_part.train(ctx, f"DAE-Talker speech2latent ({ctx.identity})", s2l,
                                   s2l_workdir, span=(0.6, 0.75)))
  regressor_workdir = os.path.join(ctx.system_dir("experts"), "face_regressor")
  trainings.append(main_part.train(ctx, "face regressor (pose, landmarks; for evaluation)",
                                   ctx.config("face_regressor"), regressor_workdir,
                                   span=(0.75, 0.8)))

  model = inference.load(dae_workdir, s2l_workdir)
  syncnet_workdir = ctx.artefacts["syncnet_workdir"]
  sync_eval_workdir = ctx.artefacts.get("sync_eval_workdir", "")
  sources = {**model.sources, "syncnet": syncnet_workdir, "sync_eval": sync_eval_workdir,
             "face_regressor": regressor_workdir}
  path = os.path.join(out, "dae_talker_tables.json")
  settings = EVAL_SETTINGS[ctx.variant]
  tables = main_part.cached_tables(
      ctx, path, sources,
      video=(0.8, "DAE-Talker video", lambda: video(ctx, out, model, settings["sample_steps"])),
      tables=(0.85, "DAE-Talker Tables 1-4", lambda: evaluation.run(
          ctx.corpus_root, ctx.identity, dae_workdir, s2l_workdir, "", syncnet_workdir,
          regressor_workdir, sync_eval_workdir=sync_eval_workdir, **settings)),
      markdown=evaluation.markdown, function="talking_heads.systems.dae_talker.evaluation.run")
  made = tables["video"]
  lines = main_part.training_table(trainings) + [
      "", f"Identity {made['identity']}: [video]({made['video']}) driven by the held-out-voice "
      f"audio of {made['audio_clip']} ({made['frames']} frames, {made['sample_steps']} DDIM "
      f"steps, {made['frames_per_second']} frames/s). Tables at small scale "
      "(dae_talker/dae_talker_tables.md):", "", evaluation.markdown(tables)]
  pair = html_report.VideoPair(
      f"DAE-Talker: {made['identity']} from the held-out voice of {made['audio_clip']}",
      made["video"], main_part.truth_video(
          ctx, dataset_lib.Dataset(ctx.corpus_root).clip(made["audio_clip"])),
      f"{made['frames']} frames, {made['sample_steps']} DDIM steps from one shared x_T; beside it "
      f"{made['audio_clip']} as rendered by the corpus (the same speech).")
  return PartReport(markdown="\n".join(lines) + "\n", summary={"video": made},
                    artefacts={"face_regressor_workdir": regressor_workdir}, trainings=trainings,
                    videos=[pair])
