r"""LaDTalk Tables 1 and 2 at small scale: Wav2Lip vs Wav2Lip + SOVQAE on one identity's clips.

  python -m experiments.ladtalk_eval --dataset=runs/main/corpus --identity=id01 \
      --wav2lip_workdir=runs/main/wav2lip --sovqae_workdir=runs/main/sovqae \
      --syncnet_workdir=runs/main/syncnet --splits=test,heldout_voice \
      --out=experiments/results/ladtalk_demo/tables.json

For every clip of the identity in each split, the clip's own frames are the identity video and
its audio drives both systems (`--box=full`: corpus frames are face crops):
  * Wav2Lip alone (`systems.wav2lip_pipeline.run`), and
  * LaDTalk: the same Wav2Lip faces upscaled to the SOVQAE size and passed through it
    (`systems.ladtalk_pipeline.run`).
Split "test" holds held-out utterances in the identity's own voice (Table 1: original-audio
driving); "heldout_voice" holds utterances in voices the networks never heard (Table 2: the
paper's out-of-domain audio). Synthetic clips have ground truth for both.

Metrics, on the pasted full frames against the clip's frames:
  * PSNR with LaDTalk's sliding evaluation (`metrics.sliding`; generated and reference have the
    same length here, so the window is the whole clip), and PSNR of the lower half of the face;
  * FID over all frames of the split (only with `--weights_dir` holding pt_inception-2015-12-05;
    otherwise reported as unavailable — never with random Inception weights);
  * LSE-C / LSE-D with the SyncNet_color trained here (`--syncnet_workdir`; NOT comparable with
    the papers' official-SyncNet numbers), also for the ground-truth clips as the ceiling.
Writes JSON (`--out`) and a markdown table beside it with the command, machine and duration.
"""

from __future__ import annotations

import time
from typing import Any

from absl import app, flags, logging
import numpy as np

from experiments import reports
from talking_heads.io import dataset as dataset_lib
from talking_heads.metrics import fid as fid_lib
from talking_heads.metrics import image as image_lib
from talking_heads.metrics import sliding as sliding_lib
from talking_heads.metrics import sync_experts
from talking_heads.systems import ladtalk_pipeline
from talking_heads.systems import wav2lip_pipeline

SYSTEMS = ("wav2lip", "ladtalk", "ground_truth")

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (only when run as a program: the module is also imported)."""
  flags.DEFINE_string("dataset", None, "Dataset root (the dataset format).")
  flags.DEFINE_string("identity", "id01", "The identity the SOVQAE was trained on.")
  flags.DEFINE_list("splits", ["test", "heldout_voice"], "Splits to evaluate.")
  flags.DEFINE_string("wav2lip_workdir", None, "Trained `wav2lip` stage workdir.")
  flags.DEFINE_string("sovqae_workdir", None, "Trained `sovqae` stage workdir.")
  flags.DEFINE_string("syncnet_workdir", None, "Trained `syncnet` stage workdir (LSE).")
  flags.DEFINE_string("weights_dir", "", "Folder with pt_inception-2015-12-05 (FID).")
  flags.DEFINE_integer("max_clips", 0, "Clips per split (0: all).")
  flags.DEFINE_string("out", "ladtalk_tables.json", "JSON output; markdown beside it.")


def _psnr(generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
  return np.asarray(image_lib.psnr(generated, reference, data_range=255.0))


def lower_half(frames: np.ndarray) -> np.ndarray:
  """[T, S, S, 3] -> [T, S/2, S, 3]: where Wav2Lip regenerates the face."""
  return frames[:, frames.shape[1] // 2:]


def clip_scores(frames: np.ndarray, reference: np.ndarray, audio: np.ndarray,
                expert: sync_experts.SyncExpert, clip_id: str) -> dict[str, float]:
  """Sliding PSNR (full frame and lower half) and LSE of one generated clip."""
  n = min(frames.shape[0], reference.shape[0])
  psnr = sliding_lib.sliding_frame_metric(_psnr, frames[:n], reference, higher_is_better=True)
  psnr_lower = sliding_lib.sliding_frame_metric(_psnr, lower_half(frames[:n]), lower_half(reference),
                                                higher_is_better=True)
  sync = sync_experts.score_clip(expert, frames, audio, clip_id=clip_id)
  return {"psnr": psnr.best, "psnr_lower_half": psnr_lower.best, "lse_c": sync.confidence,
          "lse_d": sync.distance, "frames": int(frames.shape[0])}


def _fid(extractor: fid_lib.InceptionFeatureExtractor | None, generated: list[np.ndarray],
         reference: list[np.ndarray]) -> float | str:
  if extractor is None:
    return "unavailable: pt_inception-2015-12-05 missing from --weights_dir"
  stats = fid_lib.FeatureStatistics(), fid_lib.FeatureStatistics()
  for g, r in zip(generated, reference):
    stats[0].update(extractor(g))
    stats[1].update(extractor(r))
  return fid_lib.fid(*stats)


def evaluate_split(clips: list[dataset_lib.Clip], wav2lip: wav2lip_pipeline.Wav2LipModel,
                   sovqae: ladtalk_pipeline.SOVQAEModel, expert: sync_experts.SyncExpert,
                   extractor: fid_lib.InceptionFeatureExtractor | None,
                   options: wav2lip_pipeline.Options) -> dict[str, Any]:
  """Per-clip and mean scores of the three systems on `clips`."""
  per_clip: dict[str, list[dict[str, float]]] = {s: [] for s in SYSTEMS}
  frames_by_system: dict[str, list[np.ndarray]] = {s: [] for s in SYSTEMS}
  seconds = {"wav2lip": 0.0, "ladtalk": 0.0}
  for clip in clips:
    reference, audio = clip.frames, clip.audio
    inputs = wav2lip_pipeline.prepare_arrays(audio, reference, wav2lip.image_size, options,
                                             audio_id=clip.id, video_id=clip.id)
    start = time.perf_counter()
    base = wav2lip_pipeline.run(wav2lip, inputs, options)
    seconds["wav2lip"] += time.perf_counter() - start
    start = time.perf_counter()
    refined = ladtalk_pipeline.run(wav2lip, sovqae, inputs, options)
    seconds["ladtalk"] += time.perf_counter() - start
    for name, frames in (("wav2lip", base.frames), ("ladtalk", refined.frames),
                         ("ground_truth", reference)):
      scores = clip_scores(frames, reference, audio, expert, clip.id)
      per_clip[name].append({"clip": clip.id, **scores})
      frames_by_system[name].append(frames[:reference.shape[0]])
  total_frames = sum(r["frames"] for r in per_clip["wav2lip"])
  summary = {}
  for name in SYSTEMS:
    rows = per_clip[name]
    summary[name] = {k: float(np.mean([r[k] for r in rows]))
                     for k in ("psnr", "psnr_lower_half", "lse_c", "lse_d")}
    if name != "ground_truth":
      summary[name]["fid"] = _fid(extractor, frames_by_system[name], frames_by_system["ground_truth"])
      summary[name]["frames_per_second"] = total_frames / max(seconds[name], 1e-9)
  return {"clips": len(clips), "frames": total_frames, "summary": summary, "per_clip": per_clip}


def _fmt(value: Any) -> str:
  return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(results: dict[str, Any]) -> str:
  lines = ["# LaDTalk Tables 1/2 at small scale (synthetic corpus)", "",
           f"Command: `{results['command']}`  ", f"Machine: {results['machine']}  ",
           f"Duration: {results['duration_s']} s; identity {results['identity']}; LSE expert: "
           f"{results['lse_expert']}", "",
           "| split | system | PSNR (sliding) | PSNR lower half | FID | LSE-C | LSE-D | frames/s |",
           "|---|---|---|---|---|---|---|---|"]
  for split, r in results["splits"].items():
    for name, s in r["summary"].items():
      lines.append(f"| {split} ({r['clips']} clips) | {name} | {_fmt(s['psnr'])} | "
                   f"{_fmt(s['psnr_lower_half'])} | {_fmt(s.get('fid', '-'))} | {_fmt(s['lse_c'])} | "
                   f"{_fmt(s['lse_d'])} | {_fmt(s.get('frames_per_second', '-'))} |")
  lines += ["", "LaDTalk vs Wav2Lip (the issue's bar: LSE-C >= 80% of Wav2Lip's, higher PSNR):", ""]
  for split, r in results["splits"].items():
    s = r["summary"]
    lines.append(f"- {split}: LSE-C ratio {s['ladtalk']['lse_c'] / s['wav2lip']['lse_c']:.3f}; "
                 f"PSNR {s['wav2lip']['psnr']:.2f} -> {s['ladtalk']['psnr']:.2f} dB")
  return "\n".join(lines) + "\n"


def run(dataset: str, identity: str, splits: list[str], wav2lip_workdir: str, sovqae_workdir: str,
        syncnet_workdir: str, weights_dir: str = "", max_clips: int = 0) -> dict[str, Any]:
  """Evaluates both systems on each split; returns the JSON-ready results (no command/machine)."""
  wav2lip = wav2lip_pipeline.load_wav2lip_workdir(wav2lip_workdir)
  sovqae = ladtalk_pipeline.load_sovqae_workdir(sovqae_workdir)
  expert = sync_experts.TrainedSyncNetExpert.from_workdir(syncnet_workdir)
  extractor = None
  if weights_dir:   # a folder without the file raises MissingWeightsError naming it
    from talking_heads.pretrained import inception as inception_convert  # pylint: disable=g-import-not-at-top
    extractor = fid_lib.InceptionFeatureExtractor(inception_convert.load_inception(weights_dir))
  options = wav2lip_pipeline.Options(box="full")
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


def main(argv):
  del argv
  start = time.time()
  results = run(FLAGS.dataset, FLAGS.identity, FLAGS.splits, FLAGS.wav2lip_workdir,
                FLAGS.sovqae_workdir, FLAGS.syncnet_workdir, FLAGS.weights_dir, FLAGS.max_clips)
  results.update(command=reports.command_line(),
                 machine=reports.machine_description(), duration_s=round(time.time() - start, 1))
  reports.write_results(FLAGS.out, results, markdown(results))
  print(markdown(results))


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["dataset", "wav2lip_workdir", "sovqae_workdir", "syncnet_workdir"])
  app.run(main)
