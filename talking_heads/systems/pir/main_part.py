"""PIR's part of the main job: components A, B and C on the identity (`ctx.identity`), the face
regressor its LMD needs (a shared expert in the experts' folder; DAE-Talker's part trains it
first in a whole job), a video of the identity re-enacted by held-out-voice speech, and Tables
1/2 at small scale (`evaluation.run`).

Steps per variant (`STEPS`): tiny keeps the tiny configs'; demo fits about 25 minutes on 2 free
cores (measured in the job, experiments/results/pir_demo): A 1000 steps (its config's) 20 s,
B 400 steps 8.1 min (1.2 s a step), C 450 steps about 14 min (200 took 6.3 min alone, 1.9 s a
step; the next 250 were resumed with the cores shared), the regressor (an earlier part's) and the
evaluation bounded by `EVAL_SETTINGS` (the video and two clips of 50 frames per split) about 1
min. B and C are far from converged at these steps (the configs' demo runs are 3000 steps each):
C's held-out PSNR was 25.3 / 26.4 / 26.7 / 26.3 dB at steps 200 / 300 / 400 / 450.
"""

from __future__ import annotations

import os
import time
from typing import Any

from talking_heads.audio import windows
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import html_report
from talking_heads.io import video as video_io
from talking_heads.systems import main_part
from talking_heads.systems import video_inference
from talking_heads.systems.api import MainContext, PartReport
from talking_heads.systems.pir import evaluation
from talking_heads.systems.pir import inference

# Training steps per stage and variant (None: the config's own).
STEPS = {"tiny": {"pir_audio2exp": None, "pir_triplane": None, "pir_renderer": None},
         "demo": {"pir_audio2exp": None, "pir_triplane": 400, "pir_renderer": 450}}
# Small-scale evaluation per variant: clips per split, frames per clip, frames per renderer call.
EVAL_SETTINGS = {"tiny": dict(max_clips=1, max_frames=12, batch_size=4),
                 "demo": dict(max_clips=2, max_frames=50, batch_size=16)}
# Where each stage's training falls in the part's progress.
SPANS = {"pir_audio2exp": (0.0, 0.05), "pir_triplane": (0.05, 0.4),
         "pir_renderer": (0.4, 0.8)}


def stage_config(ctx: MainContext, stage: str, **fields: Any) -> Any:
  """`stage`'s config of the job's variant on the identity, at the part's steps."""
  config = ctx.config(stage)
  config.data.identities = ctx.identity
  main_part.with_steps(config, STEPS[ctx.variant][stage])
  for key, value in fields.items():
    config[key].update(value)
  return config


def heldout_voice_clip(ctx: MainContext) -> dataset_lib.Clip:
  """The identity's first held-out-voice clip (its face, a voice no component heard)."""
  return dataset_lib.Dataset(ctx.corpus_root).identity_clips("heldout_voice", ctx.identity)[0]


def video(ctx: MainContext, out: str, model: inference.PirModel, batch_size: int
          ) -> dict[str, Any]:
  """The identity's held-out-voice clip re-enacted by its own speech: its pose, K and frames are
  the target, the voice drives A."""
  data = dataset_lib.Dataset(ctx.corpus_root)
  clip = heldout_voice_clip(ctx)
  target = inference.target_from_clip(data, clip)
  start = time.perf_counter()
  result = inference.run_arrays(model, target, clip.audio,
                                video_inference.Options(box="full", batch_size=batch_size),
                                audio_id=clip.id)
  seconds = time.perf_counter() - start
  path = os.path.join(out, "pir_heldout_voice.mp4")
  video_io.write_video_with_audio(path, result.frames, result.audio, fps=result.fps,
                                  sample_rate=windows.SAMPLE_RATE)
  return {"identity": ctx.identity, "audio_clip": clip.id,
          "video": os.path.relpath(path, ctx.workdir), "frames": int(result.frames.shape[0]),
          "frames_per_second": round(result.frames.shape[0] / seconds, 2)}


def regressor(ctx: MainContext, trainings: list[dict[str, Any]]) -> str:
  """The face regressor's workdir: an earlier part's, else trained here (recorded)."""
  workdir = ctx.artefacts.get("face_regressor_workdir")
  if workdir:
    return workdir
  workdir = os.path.join(ctx.system_dir("experts"), "face_regressor")
  trainings.append(main_part.train(ctx, "face regressor (landmarks; for LMD)",
                                   ctx.config("face_regressor"), workdir, span=(0.8, 0.85)))
  return workdir


def run(ctx: MainContext) -> PartReport:
  out = ctx.system_dir("pir")
  workdirs = {stage: os.path.join(out, stage.removeprefix("pir_"))
              for stage in ("pir_audio2exp", "pir_triplane", "pir_renderer")}
  configs = {"pir_audio2exp": stage_config(ctx, "pir_audio2exp"),
             "pir_triplane": stage_config(ctx, "pir_triplane"),
             "pir_renderer": stage_config(ctx, "pir_renderer",
                                          triplane={"workdir": workdirs["pir_triplane"]})}
  titles = {"pir_audio2exp": "A, audio to expression", "pir_triplane": "B, tri-plane I_F",
            "pir_renderer": "C, inpainting renderer"}
  trainings = [main_part.train(ctx, f"PIR {titles[stage]} ({ctx.identity})", configs[stage],
                               workdirs[stage], span=SPANS[stage]) for stage in configs]
  regressor_workdir = regressor(ctx, trainings)
  model = inference.load(workdirs["pir_audio2exp"], workdirs["pir_renderer"])
  syncnet_workdir = ctx.artefacts["syncnet_workdir"]
  sync_eval_workdir = ctx.artefacts.get("sync_eval_workdir", "")
  sources = {**model.sources, "syncnet": syncnet_workdir, "sync_eval": sync_eval_workdir,
             "face_regressor": regressor_workdir}
  path = os.path.join(out, "pir_tables.json")
  settings = EVAL_SETTINGS[ctx.variant]
  data = dataset_lib.Dataset(ctx.corpus_root)
  splits = tuple(s for s in evaluation.SPLITS
                 if any(c.identity == ctx.identity for c in data.clips(s)))
  tables = main_part.cached_tables(
      ctx, path, sources,
      video=(0.85, "PIR video", lambda: video(ctx, out, model, settings["batch_size"])),
      tables=(0.9, "PIR Tables 1/2", lambda: evaluation.run(
          ctx.corpus_root, ctx.identity, workdirs["pir_audio2exp"], workdirs["pir_renderer"],
          splits=splits, syncnet_workdir=syncnet_workdir, sync_eval_workdir=sync_eval_workdir,
          regressor_workdir=regressor_workdir, **settings)),
      markdown=evaluation.markdown, function="talking_heads.systems.pir.evaluation.run")
  made = tables["video"]
  lines = main_part.training_table(trainings) + [
      "", f"Identity {made['identity']}: [video]({made['video']}), its held-out-voice clip "
      f"{made['audio_clip']} re-enacted by its own speech ({made['frames']} frames, "
      f"{made['frames_per_second']} frames/s with volume rendering). Tables 1/2 at small scale "
      "(pir/pir_tables.md):", "", evaluation.markdown(tables)]
  pair = html_report.VideoPair(
      f"PIR: {made['identity']} re-enacted by the held-out voice of {made['audio_clip']}",
      made["video"], main_part.truth_video(ctx, data.clip(made["audio_clip"])),
      f"{made['frames']} frames: A's expressions from the speech, the clip's own pose and K, "
      "the head re-rendered by B and C; beside it the clip as rendered by the corpus.")
  summary = {"video": made,
             "tables": {split: r["summary"] for split, r in tables["splits"].items()}}
  return PartReport(markdown="\n".join(lines) + "\n", summary=summary, trainings=trainings,
                    videos=[pair])
