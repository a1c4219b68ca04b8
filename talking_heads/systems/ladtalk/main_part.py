"""LaDTalk's part of the main job: Wav2Lip against the job's expert, the identity's SOVQAE,
held-out-voice videos of both systems and Tables 1/2 at small scale (`evaluation`)."""

from __future__ import annotations

import os
import time
from typing import Any

from talking_heads.io import dataset as dataset_lib
from talking_heads.io import html_report
from talking_heads.systems import main_part
from talking_heads.systems import video_inference
from talking_heads.systems.api import MainContext, PartReport
from talking_heads.systems.ladtalk import evaluation
from talking_heads.systems.ladtalk import inference


def videos(ctx: MainContext, out: str, w2l: inference.Wav2LipModel,
           vq: inference.SOVQAEModel) -> dict[str, Any]:
  """Wav2Lip and LaDTalk mp4s: the identity's first training clip driven by held-out-voice audio."""
  data = dataset_lib.Dataset(ctx.corpus_root)
  video = next(c for c in data.clips("train") if c.identity == ctx.identity)
  audio = next(c for c in data.clips("heldout_voice") if c.identity == ctx.identity)
  options = video_inference.Options(box="full")   # corpus frames are face crops
  inputs = video_inference.prepare_arrays(audio.audio, video.frames, w2l.image_size, options,
                                          audio_id=audio.id, video_id=video.id)
  made = {"identity": ctx.identity, "video_clip": video.id, "audio_clip": audio.id}
  for name, generate in (("wav2lip", lambda: inference.run_wav2lip(w2l, inputs, options)),
                         ("ladtalk", lambda: inference.run_ladtalk(w2l, vq, inputs, options))):
    start = time.perf_counter()
    result = generate()
    seconds = time.perf_counter() - start
    path = os.path.join(out, f"{name}_heldout_voice.mp4")
    video_inference.write_mp4(path, result)
    made[name] = {"video": os.path.relpath(path, ctx.workdir),
                  "frames": int(result.frames.shape[0]),
                  "frames_per_second": round(result.frames.shape[0] / seconds, 1)}
  return made


def run(ctx: MainContext) -> PartReport:
  out = ctx.system_dir("ladtalk")
  syncnet_workdir = ctx.artefacts["syncnet_workdir"]
  wav2lip_config = ctx.config("wav2lip")
  wav2lip_config.sync_expert.workdir = syncnet_workdir
  sovqae_config = ctx.config("sovqae")
  sovqae_config.data.identities = ctx.identity
  wav2lip_workdir, sovqae_workdir = os.path.join(out, "wav2lip"), os.path.join(out, "sovqae")
  trainings = [
      main_part.train(ctx, "LaDTalk base model (Wav2Lip)", wav2lip_config, wav2lip_workdir,
                      span=(0.0, 0.45)),
      main_part.train(ctx, f"LaDTalk SOVQAE ({ctx.identity})", sovqae_config, sovqae_workdir,
                      span=(0.45, 0.9))]
  w2l, vq = inference.load_wav2lip(wav2lip_workdir), inference.load_sovqae(sovqae_workdir)
  sync_eval_workdir = ctx.artefacts.get("sync_eval_workdir", "")
  sources = {"wav2lip": w2l.source, "sovqae": vq.source, "syncnet": syncnet_workdir,
             "sync_eval": sync_eval_workdir}
  path = os.path.join(out, "ladtalk_tables.json")
  data = dataset_lib.Dataset(ctx.corpus_root)
  splits = [s for s in ("test", "heldout_voice")
            if any(c.identity == ctx.identity for c in data.clips(s))]
  results = main_part.cached_tables(
      ctx, path, sources, video=(0.9, "LaDTalk videos", lambda: videos(ctx, out, w2l, vq)),
      tables=(0.93, "LaDTalk Tables 1/2", lambda: evaluation.run(
          ctx.corpus_root, ctx.identity, splits, wav2lip_workdir, sovqae_workdir,
          syncnet_workdir, max_clips=0 if ctx.variant == "demo" else 1,
          sync_eval_workdir=sync_eval_workdir)),
      markdown=evaluation.markdown, function="talking_heads.systems.ladtalk.evaluation.run",
      video_key="videos")
  made = results["videos"]
  summary = {split: r["summary"] for split, r in results["splits"].items()}
  lines = main_part.training_table(trainings) + [
      "", f"Identity {made['identity']} (clip {made['video_clip']} driven by the held-out-voice "
      f"audio of {made['audio_clip']}): [Wav2Lip]({made['wav2lip']['video']}) "
      f"({made['wav2lip']['frames_per_second']} frames/s), [LaDTalk]({made['ladtalk']['video']}) "
      f"({made['ladtalk']['frames_per_second']} frames/s). Tables 1/2 at small scale "
      f"(ladtalk/ladtalk_tables.md; LSE: {results['lse_expert']}):", "",
      "| split | system | PSNR | PSNR lower half | LSE-C | LSE-D |", "|---|---|---|---|---|---|"]
  for split, by_system in summary.items():
    for name, s in by_system.items():
      lines.append(f"| {split} | {name} | {s['psnr']:.2f} | {s['psnr_lower_half']:.2f} | "
                   f"{s['lse_c']:.3f} | {s['lse_d']:.3f} |")
  lines += evaluation.agreement_lines(results)
  truth = main_part.truth_video(ctx, dataset_lib.Dataset(ctx.corpus_root).clip(made["audio_clip"]))
  pairs = [html_report.VideoPair(
      f"{title}: {made['identity']} (clip {made['video_clip']}) driven by the held-out voice of "
      f"{made['audio_clip']}", made[name]["video"], truth,
      f"Beside it: {made['audio_clip']} as rendered by the corpus (the same speech).")
           for name, title in (("wav2lip", "Wav2Lip"), ("ladtalk", "LaDTalk"))]
  return PartReport(markdown="\n".join(lines) + "\n", summary={"videos": made, "tables": summary},
                    trainings=trainings, videos=pairs)
