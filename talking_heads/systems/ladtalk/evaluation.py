"""LaDTalk Tables 1 and 2 at small scale: Wav2Lip vs Wav2Lip + SOVQAE on one identity's clips.

For every clip of the identity in each split, the clip's own frames are the identity video and
its audio drives both systems (`box="full"`: corpus frames are face crops):
  * Wav2Lip alone (`inference.run_wav2lip`), and
  * LaDTalk: the same Wav2Lip faces upscaled to the SOVQAE size and passed through it
    (`inference.run_ladtalk`).
Split "test" holds held-out utterances in the identity's own voice (Table 1: original-audio
driving); "heldout_voice" holds utterances in voices the networks never heard (Table 2: the
paper's out-of-domain audio). Synthetic clips have ground truth for both.

Metrics, on the pasted full frames against the clip's frames:
  * PSNR with LaDTalk's sliding evaluation (`metrics.sliding`; generated and reference have the
    same length here, so the window is the whole clip), and PSNR of the lower half of the face;
  * FID over all frames of the split (only with `weights_dir` holding pt_inception-2015-12-05;
    otherwise reported as unavailable — never with random Inception weights);
  * LSE-C / LSE-D with the SyncNet_color trained here (NOT comparable with the papers'
    official-SyncNet numbers), also for the ground-truth clips as the ceiling.
Command: `python -m experiments.ladtalk.tables` (JSON + markdown with command, machine, duration).
"""

from __future__ import annotations

import time
from typing import Any

from absl import logging
import numpy as np

from talking_heads.io import dataset as dataset_lib
from talking_heads.metrics import fid as fid_lib
from talking_heads.metrics import suite
from talking_heads.metrics import sync_experts
from talking_heads.systems import video_inference
from talking_heads.systems.experts import sync_expert
from talking_heads.systems.ladtalk import inference

SYSTEMS = ("wav2lip", "ladtalk", "ground_truth")
FID_UNAVAILABLE = "unavailable: pt_inception-2015-12-05 missing from --weights_dir"


def evaluate_split(clips: list[dataset_lib.Clip], wav2lip: inference.Wav2LipModel,
                   sovqae: inference.SOVQAEModel, expert: sync_experts.SyncExpert,
                   extractor: fid_lib.InceptionFeatureExtractor | None,
                   options: video_inference.Options) -> dict[str, Any]:
  """Per-clip and mean scores of the three systems on `clips`."""
  scorer = suite.VideoScorer(("psnr", "psnr_lower_half", "lse"), expert=expert, sliding=True)
  per_clip: dict[str, list[dict[str, float]]] = {s: [] for s in SYSTEMS}
  fid = {s: suite.FidAccumulator(extractor, FID_UNAVAILABLE) for s in SYSTEMS if s != "ground_truth"}
  seconds = {"wav2lip": 0.0, "ladtalk": 0.0}
  for clip in clips:
    reference, audio = clip.frames, clip.audio
    inputs = video_inference.prepare_arrays(audio, reference, wav2lip.image_size, options,
                                             audio_id=clip.id, video_id=clip.id)
    start = time.perf_counter()
    base = inference.run_wav2lip(wav2lip, inputs, options)
    seconds["wav2lip"] += time.perf_counter() - start
    start = time.perf_counter()
    refined = inference.run_ladtalk(wav2lip, sovqae, inputs, options)
    seconds["ladtalk"] += time.perf_counter() - start
    for name, frames in (("wav2lip", base.frames), ("ladtalk", refined.frames),
                         ("ground_truth", reference)):
      scores = scorer.score(frames, reference, audio, clip_id=clip.id)  # sliding PSNRs, LSE
      per_clip[name].append({"clip": clip.id, **scores, "frames": int(frames.shape[0])})
      if name in fid:
        fid[name].add(frames[:reference.shape[0]], reference)
  total_frames = sum(r["frames"] for r in per_clip["wav2lip"])
  summary = {}
  for name in SYSTEMS:
    rows = per_clip[name]
    summary[name] = {k: float(np.mean([r[k] for r in rows]))
                     for k in ("psnr", "psnr_lower_half", "lse_c", "lse_d")}
    if name != "ground_truth":
      summary[name]["fid"] = fid[name].value()
      summary[name]["frames_per_second"] = total_frames / max(seconds[name], 1e-9)
  return {"clips": len(clips), "frames": total_frames, "summary": summary, "per_clip": per_clip}


def markdown(results: dict[str, Any]) -> str:
  lines = ["# LaDTalk Tables 1/2 at small scale (synthetic corpus)", "",
           f"Command: `{results['command']}`  ", f"Machine: {results['machine']}  ",
           f"Duration: {results['duration_s']} s; identity {results['identity']}; LSE expert: "
           f"{results['lse_expert']}", "",
           "| split | system | PSNR (sliding) | PSNR lower half | FID | LSE-C | LSE-D | frames/s |",
           "|---|---|---|---|---|---|---|---|"]
  for split, r in results["splits"].items():
    for name, s in r["summary"].items():
      cells = (s["psnr"], s["psnr_lower_half"], s.get("fid", "-"), s["lse_c"], s["lse_d"],
               s.get("frames_per_second", "-"))
      lines.append(f"| {split} ({r['clips']} clips) | {name} | "
                   + " | ".join(suite.format_value(c) for c in cells) + " |")
  lines += ["", "LaDTalk vs Wav2Lip (the issue's bar: LSE-C >= 80% of Wav2Lip's, higher PSNR):", ""]
  for split, r in results["splits"].items():
    s = r["summary"]
    lines.append(f"- {split}: LSE-C ratio {s['ladtalk']['lse_c'] / s['wav2lip']['lse_c']:.3f}; "
                 f"PSNR {s['wav2lip']['psnr']:.2f} -> {s['ladtalk']['psnr']:.2f} dB")
  return "\n".join(lines) + "\n"


def run(dataset: str, identity: str, splits: list[str], wav2lip_workdir: str, sovqae_workdir: str,
        syncnet_workdir: str, weights_dir: str = "", max_clips: int = 0) -> dict[str, Any]:
  """Evaluates both systems on each split; returns the JSON-ready results (no command/machine)."""
  wav2lip = inference.load_wav2lip(wav2lip_workdir)
  sovqae = inference.load_sovqae(sovqae_workdir)
  expert = sync_expert.lse_expert(syncnet_workdir)
  extractor = None
  if weights_dir:   # a folder without the file raises MissingWeightsError naming it
    from third_party import inception as inception_convert  # pylint: disable=g-import-not-at-top
    extractor = fid_lib.InceptionFeatureExtractor(inception_convert.load_inception(weights_dir))
  options = video_inference.Options(box="full")
  data = dataset_lib.Dataset(dataset)
  out = {}
  for split in splits:
    clips = [c for c in data.clips(split) if c.identity == identity]
    if not clips:
      raise ValueError(f"dataset {dataset}: no clips of identity {identity!r} in split {split!r}")
    clips = clips[:max_clips] if max_clips else clips
    logging.info("%s: %d clips", split, len(clips))
    out[split] = evaluate_split(clips, wav2lip, sovqae, expert, extractor, options)
  return {"identity": identity, "lse_expert": "SyncNet_color trained here (not comparable with papers)",
          "wav2lip_workdir": wav2lip_workdir, "sovqae_workdir": sovqae_workdir, "splits": out}
