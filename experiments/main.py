r"""The main job: everything that runs end to end on the built-in default data.

  bash experiments/main.sh                       # sets up .venv, then runs this with defaults
  python -m experiments.main --workdir=runs/main --variant=demo

Each part resumes from what an earlier launch finished (finished clips, checkpoints), and the
report at `<workdir>/report.md` (+ `report.json`) is rewritten at the end. Parts so far:
  1. the synthetic talking-face corpus (`data.synthetic`, preset = the variant) in <workdir>/corpus,
     with its mel features precomputed for the audio-driven pipelines;
  2. the frame autoencoder (the trainer's reference stage) trained on the corpus's frames;
  3. the lip-sync expert (Wav2Lip's SyncNet_color, width-reduced for CPU) trained on sync pairs;
  4. the LSE evaluator with that expert on the test and held-out splits: recovery of planted
     audio shifts of -6..6 frames, and LSE-C of in-sync clips vs clips with another clip's audio;
  5. LaDTalk: Wav2Lip trained against that expert, a SOVQAE trained on one identity (id01 in the
     demo corpus), Wav2Lip and LaDTalk videos for that identity driven by held-out-voice audio
     (<workdir>/ladtalk_heldout_voice.mp4, wav2lip_heldout_voice.mp4), and LaDTalk Tables 1/2 at
     small scale (`experiments.ladtalk_eval`: PSNR, LSE-C/D on test and held-out-voice clips);
  6. DAE-Talker on the same identity: the diffusion autoencoder, its per-frame latents of the
     identity's clips, speech2latent trained on pseudo-sentences of them, a face regressor (pose
     and landmarks, for evaluation), a video driven by held-out-voice audio
     (<workdir>/dae_talker_heldout_voice.mp4, DDIM from one shared x_T) and DAE-Talker Tables 1-4
     at small scale (`experiments.dae_talker_eval`, written to dae_talker_tables.md).
"""

import json
import os
import time
from typing import Any

from absl import app, flags, logging

from talking_heads.io import reports
from data import synthetic
from experiments import dae_talker_eval
from talking_heads.systems.ladtalk import evaluation as ladtalk_eval
from experiments.experts import sync_eval
from experiments.configs.dae_talker import dae as dae_config
from experiments.configs.experts import face_regressor as face_regressor_config
from experiments.configs import frame_autoencoder, sovqae, syncnet, wav2lip
from experiments.configs.dae_talker import speech2latent as speech2latent_config
from experiments.logs import quiet_library_logs
from talking_heads.audio import windows
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import video as video_io
from talking_heads.metrics import sync_experts
from talking_heads.pipelines import base as pipelines_base
from talking_heads.systems.dae_talker import latents as dae_latents
from talking_heads.systems import dae_talker_pipeline
from talking_heads.systems import ladtalk_pipeline
from talking_heads.systems import wav2lip_pipeline
from talking_heads.training import loop

_WORKDIR = flags.DEFINE_string("workdir", "runs/main", "Where every part writes its outputs.")
_VARIANT = flags.DEFINE_enum("variant", "demo", ["tiny", "demo"], "Config variant of every part.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Processes that render corpus clips.")


def _read_metrics(workdir: str) -> tuple[dict[str, float], dict[str, float]]:
  """Last training and last eval record of a run's metrics.jsonl."""
  train, evaluation = {}, {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      record = json.loads(line)
      if any(k.startswith("eval/") for k in record):
        evaluation = record
      else:
        train = record
  return train, evaluation


def train_part(name: str, config, workdir: str) -> dict[str, Any]:
  start = time.perf_counter()
  result = loop.train_and_evaluate(config, workdir)
  train, evaluation = _read_metrics(workdir)
  images = sorted(p for p in os.listdir(os.path.join(workdir, "images")) if p.endswith(".png"))
  return {"part": name, "stage": config.stage, "variant": config.variant, "steps": result.step,
          "seconds": round(time.perf_counter() - start, 1), "train": train, "eval": evaluation,
          "image": os.path.join(os.path.basename(workdir), "images", images[-1]) if images else None}


def corpus_part(workdir: str, preset: str, workers: int) -> tuple[str, dict[str, Any]]:
  root = os.path.join(workdir, "corpus")
  start = time.perf_counter()
  summary = synthetic.build_corpus(root, preset, workers=workers)
  features = pipelines_base.precompute_features(root)
  return root, {"clips": summary["clips"], "frames": summary["frames"],
                "audio_minutes": round(summary["audio_seconds"] / 60, 1), "splits": summary["splits"],
                "identities": summary["identities"], "feature_files_written": features,
                "seconds": round(time.perf_counter() - start, 1)}


def sync_part(syncnet_workdir: str, corpus_root: str, workdir: str, max_clips: int) -> dict[str, Any]:
  """Offset recovery and LSE-C separation with the expert trained in `syncnet_workdir`."""
  path = os.path.join(workdir, "sync_eval.json")
  expert = sync_experts.TrainedSyncNetExpert.from_workdir(syncnet_workdir)
  results = sync_eval.run(expert, "SyncNet_color trained by this job (not comparable with papers)",
                          corpus_root, ["test", "heldout_identity", "heldout_voice"], max_shift=6,
                          max_clips=max_clips)
  results = reports.to_json(results)
  with open(path, "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(workdir, "sync_eval.md"), "w") as f:
    f.write(sync_eval.markdown(results))
  return {split: {"clips": r["num_clips"], "shift_exact_percent": round(r["shift_exact_percent"], 1),
                  "lse_c_in_sync": round(r["in_sync"]["lse_c"], 3),
                  "lse_c_mismatched": round(r["mismatched"]["lse_c"], 3),
                  "lse_c_ratio": round(r["lse_c_ratio"], 2), "frames_per_second": round(r["frames_per_second"], 1)}
          for split, r in results["splits"].items()}


def ladtalk_identity(corpus_root: str) -> str:
  """id01 when the corpus has it (the demo's), else its first painted training identity."""
  identities = sorted({c.identity for c in dataset_lib.Dataset(corpus_root).clips("train")})
  painted = [i for i in identities if i != "astronaut"] or identities
  return "id01" if "id01" in identities else painted[0]


def ladtalk_videos(corpus_root: str, identity: str, wav2lip_workdir: str, sovqae_workdir: str,
                   workdir: str) -> dict[str, Any]:
  """Wav2Lip and LaDTalk mp4s: the identity's first training clip driven by held-out-voice audio."""
  data = dataset_lib.Dataset(corpus_root)
  video = next(c for c in data.clips("train") if c.identity == identity)
  audio = next(c for c in data.clips("heldout_voice") if c.identity == identity)
  w2l = wav2lip_pipeline.load_wav2lip_workdir(wav2lip_workdir)
  vq = ladtalk_pipeline.load_sovqae_workdir(sovqae_workdir)
  options = wav2lip_pipeline.Options(box="full")   # corpus frames are face crops
  inputs = wav2lip_pipeline.prepare_arrays(audio.audio, video.frames, w2l.image_size, options,
                                           audio_id=audio.id, video_id=video.id)
  out = {"identity": identity, "video_clip": video.id, "audio_clip": audio.id}
  for name, generate in (("wav2lip", lambda: wav2lip_pipeline.run(w2l, inputs, options)),
                         ("ladtalk", lambda: ladtalk_pipeline.run(w2l, vq, inputs, options))):
    start = time.perf_counter()
    result = generate()
    seconds = time.perf_counter() - start
    path = os.path.join(workdir, f"{name}_heldout_voice.mp4")
    wav2lip_pipeline.write_mp4(path, result)
    out[name] = {"video": os.path.basename(path), "frames": int(result.frames.shape[0]),
                 "frames_per_second": round(result.frames.shape[0] / seconds, 1)}
  return out


def ladtalk_tables(corpus_root: str, identity: str, wav2lip_workdir: str, sovqae_workdir: str,
                   syncnet_workdir: str, workdir: str, max_clips: int) -> dict[str, Any]:
  """LaDTalk Tables 1/2 on the identity's test and held-out-voice clips (those it has)."""
  data = dataset_lib.Dataset(corpus_root)
  splits = [s for s in ("test", "heldout_voice") if any(c.identity == identity for c in data.clips(s))]
  results = ladtalk_eval.run(corpus_root, identity, splits, wav2lip_workdir, sovqae_workdir,
                             syncnet_workdir, max_clips=max_clips)
  results.update(command="experiments.main (ladtalk_eval.run)", machine=reports.machine_description(),
                 duration_s="see report")
  with open(os.path.join(workdir, "ladtalk_tables.md"), "w") as f:
    f.write(ladtalk_eval.markdown(results))
  with open(os.path.join(workdir, "ladtalk_tables.json"), "w") as f:
    json.dump(reports.to_json(results), f, indent=2)
  return {split: r["summary"] for split, r in results["splits"].items()}


# Small-scale DAE-Talker evaluation per variant: clips per test set, frames per clip, DDIM steps.
DAE_TALKER_EVAL = {"tiny": dict(clips=1, frames=12, sample_steps=2, recon_stride=8),
                   "demo": dict(clips=1, frames=50, sample_steps=100, recon_stride=16)}


def dae_talker_part(corpus_root: str, identity: str, syncnet_workdir: str, workdir: str,
                    variant: str) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
  """Trains DAE-Talker's stages on `identity`, renders a held-out-voice video, runs its tables.

  A rerun with the same checkpoints keeps the video and tables already written.
  """
  dae_workdir = os.path.join(workdir, "dae")
  dae = dae_config.get_config(variant)
  dae.data.root, dae.data.identities = corpus_root, identity
  parts = [train_part(f"DAE-Talker diffusion autoencoder ({identity})", dae, dae_workdir)]
  latents_name = f"dae_{os.path.basename(workdir)}"
  encoded = dae_latents.encode_clips(corpus_root, latents_name,
                                     dae_latents.load_dae_encoder(dae_workdir),
                                     identities=[identity])
  logging.info("DAE latents: %d clips written, %d already there", len(encoded.written),
               len(encoded.skipped))
  s2l_workdir = os.path.join(workdir, "speech2latent")
  s2l = speech2latent_config.get_config(variant)
  s2l.data.root, s2l.data.identities, s2l.data.latents = corpus_root, identity, latents_name
  parts.append(train_part(f"DAE-Talker speech2latent ({identity})", s2l, s2l_workdir))
  regressor_workdir = os.path.join(workdir, "face_regressor")
  regressor = face_regressor_config.get_config(variant)
  regressor.data.root = corpus_root
  parts.append(train_part("face regressor (pose, landmarks; for evaluation)", regressor,
                          regressor_workdir))

  model = dae_talker_pipeline.load(dae_workdir, s2l_workdir)
  tables_path = os.path.join(workdir, "dae_talker_tables.json")
  path = os.path.join(workdir, "dae_talker_heldout_voice.mp4")
  if os.path.exists(tables_path) and os.path.exists(path):
    with open(tables_path) as f:
      cached = json.load(f)
    if cached.get("sources") == model.sources:   # same checkpoints: the finished work stands
      return parts, cached["video"], cached
  settings = DAE_TALKER_EVAL[variant]
  audio = next(c for c in dataset_lib.Dataset(corpus_root).clips("heldout_voice")
               if c.identity == identity)
  start = time.perf_counter()
  result = dae_talker_pipeline.run_arrays(
      model, audio.audio, dae_talker_pipeline.Options(sample_steps=settings["sample_steps"]),
      audio_id=audio.id)
  seconds = time.perf_counter() - start
  video_io.write_video_with_audio(path, result.frames, result.audio, fps=result.fps,
                                  sample_rate=windows.SAMPLE_RATE)
  video = {"identity": identity, "audio_clip": audio.id, "video": os.path.basename(path),
           "frames": int(result.frames.shape[0]), "sample_steps": settings["sample_steps"],
           "frames_per_second": round(result.frames.shape[0] / seconds, 2)}

  tables = dae_talker_eval.run(corpus_root, identity, dae_workdir, s2l_workdir, "",
                               syncnet_workdir, regressor_workdir, **settings)
  tables.update(command="experiments.main (dae_talker_eval.run)",
                machine=reports.machine_description(), video=video)
  with open(os.path.join(workdir, "dae_talker_tables.md"), "w") as f:
    f.write(dae_talker_eval.markdown(tables))
  with open(tables_path, "w") as f:
    json.dump(reports.to_json(tables), f, indent=2)
  return parts, video, tables


def write_report(workdir: str, corpus: dict[str, Any], parts: list[dict[str, Any]],
                 sync: dict[str, Any], videos: dict[str, Any], tables: dict[str, Any],
                 dae_video: dict[str, Any], dae_tables: dict[str, Any]) -> str:
  lines = ["# talking_heads main job report", "",
           f"Corpus: {corpus['clips']} clips, {corpus['frames']} frames, {corpus['audio_minutes']} min of speech, "
           f"{corpus['identities']} identities; splits {corpus['splits']} ({corpus['seconds']} s this run).", "",
           "| part | stage | variant | steps | time (s) | final train loss | eval metrics |",
           "|---|---|---|---|---|---|---|"]
  for p in parts:
    ev = ", ".join(f"{k[5:]}={v:.4g}" for k, v in p["eval"].items() if k.startswith("eval/"))
    lines.append(f"| {p['part']} | {p['stage']} | {p['variant']} | {p['steps']} | {p['seconds']} | "
                 f"{p['train'].get('loss', float('nan')):.4g} | {ev} |")
  lines += ["", "Lip-sync evaluation with the trained expert (planted shifts -6..6 frames; "
            "details in sync_eval.md):", "",
            "| split | clips | shifts recovered exactly (%) | LSE-C in sync | LSE-C other audio | ratio | frames/s |",
            "|---|---|---|---|---|---|---|"]
  for split, r in sync.items():
    lines.append(f"| {split} | {r['clips']} | {r['shift_exact_percent']} | {r['lse_c_in_sync']} | "
                 f"{r['lse_c_mismatched']} | {r['lse_c_ratio']} | {r['frames_per_second']} |")
  lines += ["", f"LaDTalk on identity {videos['identity']} (clip {videos['video_clip']} driven by the "
            f"held-out-voice audio of {videos['audio_clip']}): [Wav2Lip]({videos['wav2lip']['video']}) "
            f"({videos['wav2lip']['frames_per_second']} frames/s), [LaDTalk]({videos['ladtalk']['video']}) "
            f"({videos['ladtalk']['frames_per_second']} frames/s). Tables 1/2 at small scale "
            "(details in ladtalk_tables.md; LSE with the expert trained here):", "",
            "| split | system | PSNR | PSNR lower half | LSE-C | LSE-D |", "|---|---|---|---|---|---|"]
  for split, summary in tables.items():
    for name, s in summary.items():
      lines.append(f"| {split} | {name} | {s['psnr']:.2f} | {s['psnr_lower_half']:.2f} | "
                   f"{s['lse_c']:.3f} | {s['lse_d']:.3f} |")
  lines += ["", f"DAE-Talker on identity {dae_video['identity']}: [video]({dae_video['video']}) driven "
            f"by the held-out-voice audio of {dae_video['audio_clip']} ({dae_video['frames']} "
            f"frames, {dae_video['sample_steps']} DDIM steps, {dae_video['frames_per_second']} "
            "frames/s). Its tables at small scale (dae_talker_tables.md):", "",
            dae_talker_eval.markdown(dae_tables)]
  for p in parts:
    if p["image"]:
      lines += [f"## {p['part']}", "", f"![{p['part']}]({p['image']})", ""]
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(lines))
  with open(os.path.join(workdir, "report.json"), "w") as f:
    json.dump(reports.to_json({"corpus": corpus, "parts": parts, "sync_eval": sync,
                               "ladtalk_videos": videos, "ladtalk_tables": tables,
                               "dae_talker_video": dae_video, "dae_talker_tables": dae_tables}),
              f, indent=2)
  return path


def main(argv):
  del argv
  quiet_library_logs()
  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  variant = _VARIANT.value
  corpus_root, corpus = corpus_part(workdir, variant, _WORKERS.value)

  autoencoder = frame_autoencoder.get_config(variant)
  autoencoder.data.root = corpus_root   # frames resized to the config's image size
  expert = syncnet.get_config(variant)
  expert.data.root = corpus_root
  syncnet_workdir = os.path.join(workdir, "syncnet")
  parts = [train_part("frame autoencoder (corpus frames)", autoencoder, os.path.join(workdir, "frame_autoencoder")),
           train_part("lip-sync expert (SyncNet_color)", expert, syncnet_workdir)]
  sync = sync_part(syncnet_workdir, corpus_root, workdir, max_clips=0 if variant == "demo" else 2)

  identity = ladtalk_identity(corpus_root)
  lipsync = wav2lip.get_config(variant)
  lipsync.data.root, lipsync.sync_expert.workdir = corpus_root, syncnet_workdir
  restorer = sovqae.get_config(variant)
  restorer.data.root, restorer.data.identities = corpus_root, identity
  wav2lip_workdir, sovqae_workdir = os.path.join(workdir, "wav2lip"), os.path.join(workdir, "sovqae")
  parts += [train_part("LaDTalk base model (Wav2Lip)", lipsync, wav2lip_workdir),
            train_part(f"LaDTalk SOVQAE ({identity})", restorer, sovqae_workdir)]
  videos = ladtalk_videos(corpus_root, identity, wav2lip_workdir, sovqae_workdir, workdir)
  tables = ladtalk_tables(corpus_root, identity, wav2lip_workdir, sovqae_workdir, syncnet_workdir,
                          workdir, max_clips=0 if variant == "demo" else 1)
  dae_parts, dae_video, dae_tables = dae_talker_part(corpus_root, identity, syncnet_workdir,
                                                     workdir, variant)
  parts += dae_parts
  path = write_report(workdir, corpus, parts, sync, videos, tables, dae_video, dae_tables)
  logging.info("Report written to %s", path)
  print(open(path).read())


if __name__ == "__main__":
  app.run(main)
