"""RADIO's part of the main job: the sync discriminator (`radio_sync`), then the generator
(`radio`) against it, on the part's own many-identity corpus (the `radio` preset, which the
launcher builds for this part: `SYSTEM.main_part.corpus`; `ctx.corpus_root` is that corpus), a
one-shot video of a held-out identity (its clip's first frame the only reference) driven by a
held-out voice, and Table 1 at small scale on the held-out identities (`evaluation`).

LSE: the experts' part's independent expert when its artefacts are there (`ctx.artefacts`:
sync_eval_workdir, syncnet_workdir; they trained on the job's main corpus), else RADIO's own
sync discriminator, named as such (`evaluation.own_sync_expert`). Tables 2/3 need separately
trained ablation workdirs (`experiments.radio.tables`), the reference-robustness study the
corpus renderer (`experiments.radio.robustness`): neither runs here.
"""

from __future__ import annotations

import os
import time
from typing import Any

from talking_heads.io import dataset as dataset_lib
from talking_heads.io import html_report
from talking_heads.systems import main_part
from talking_heads.systems import video_inference
from talking_heads.systems.api import MainContext, PartReport
from talking_heads.systems.radio import evaluation
from talking_heads.systems.radio import inference

# Table 1 per variant: held-out-identity clips scored, frames per clip (0: all).
EVAL_SETTINGS = {"tiny": dict(max_clips=1, max_frames=0), "demo": dict(max_clips=10, max_frames=0)}
# The main job's training steps per variant (None: the config's own). The demo configs' 3000
# sync-discriminator and 2000 generator steps take about 1.5 hours on 2 idle CPU cores
# (`experiments.bench`, experiments/results/radio_demo: 0.13 and 2.2 s a step; 2.6 s in the job);
# the main job's demo keeps the sync discriminator's 3000 (at 1200 its held-out in-sync
# probability was 0.55 vs 0.44 off-sync, still rising) and trains 300 generator steps: with the
# corpus about 22 minutes. That generator is far from converged: the part shows the pipeline and
# its tables at demo size, not RADIO's results (the configs' schedule is for `experiments.train`).
STEPS = {"tiny": {"radio_sync": None, "radio": None},
         "demo": {"radio_sync": None, "radio": 300}}


def video(ctx: MainContext, out: str, model: inference.RadioModel) -> dict[str, Any]:
  """The first held-out identity's first clip (its first frame the one reference) dubbed with the
  first held-out-voice clip's audio (a voice no stage heard), as an mp4."""
  data = dataset_lib.Dataset(ctx.corpus_root)
  face = sorted(data.clips(evaluation.SPLIT), key=lambda c: c.id)[0]
  audio = sorted(data.clips("heldout_voice"), key=lambda c: c.id)[0]
  options = video_inference.Options(box="full")   # corpus frames are the aligned faces
  inputs = inference.prepare_arrays(audio.audio, face.frames, model.image_size, options,
                                    audio_id=audio.id, video_id=face.id)
  start = time.perf_counter()
  result = inference.run(model, inputs, options)
  seconds = time.perf_counter() - start
  path = os.path.join(out, "radio_heldout_identity_voice.mp4")
  video_inference.write_mp4(path, result)
  return {"identity": face.identity, "video_clip": face.id, "audio_clip": audio.id,
          "video": os.path.relpath(path, ctx.workdir), "frames": int(result.frames.shape[0]),
          "frames_per_second": round(result.frames.shape[0] / seconds, 1)}


def run(ctx: MainContext) -> PartReport:
  out = ctx.system_dir("radio")
  sync_workdir, radio_workdir = os.path.join(out, "radio_sync"), os.path.join(out, "radio")
  steps = STEPS[ctx.variant]
  radio_config = main_part.with_steps(ctx.config("radio"), steps["radio"])
  radio_config.sync_discriminator.workdir = sync_workdir
  sync_config = main_part.with_steps(ctx.config("radio_sync"), steps["radio_sync"])
  trainings = [
      main_part.train(ctx, "RADIO sync discriminator", sync_config, sync_workdir,
                      span=(0.0, 0.3)),
      main_part.train(ctx, "RADIO generator", radio_config, radio_workdir, span=(0.3, 0.9))]
  model = inference.load_radio(radio_workdir)
  experts = {k: ctx.artefacts.get(f"{k}_workdir", "") for k in ("syncnet", "sync_eval")}
  sources = {"radio": model.source, "radio_sync": sync_workdir, **experts}
  path = os.path.join(out, "radio_tables.json")
  results = main_part.cached_tables(
      ctx, path, sources, video=(0.9, "RADIO video", lambda: video(ctx, out, model)),
      tables=(0.93, "RADIO Table 1", lambda: evaluation.run(
          ctx.corpus_root, radio_workdir, sync_workdir=sync_workdir,
          syncnet_workdir=experts["syncnet"], sync_eval_workdir=experts["sync_eval"],
          **EVAL_SETTINGS[ctx.variant])),
      markdown=evaluation.markdown, function="talking_heads.systems.radio.evaluation.run")
  made = results["video"]
  lines = main_part.training_table(trainings) + [
      "", f"Held-out identity {made['identity']} (clip {made['video_clip']}, its first frame the "
      f"only reference) driven by the held-out-voice audio of {made['audio_clip']}: "
      f"[RADIO]({made['video']}) ({made['frames']} frames, {made['frames_per_second']} "
      "frames/s). Table 1 at small scale (radio/radio_tables.md):", "",
      evaluation.markdown(results)]
  truth = main_part.truth_video(ctx, dataset_lib.Dataset(ctx.corpus_root).clip(made["audio_clip"]))
  pair = html_report.VideoPair(
      f"RADIO (one-shot): held-out identity {made['identity']} driven by the held-out voice of "
      f"{made['audio_clip']}", made["video"], truth,
      f"Beside it: {made['audio_clip']} as rendered by the corpus (the same speech, another "
      "face).")
  return PartReport(markdown="\n".join(lines) + "\n",
                    summary={"video": made, "table_1": results["table_1"]["summary"],
                             "lse_expert": results["lse_expert"]},
                    trainings=trainings, videos=[pair])
