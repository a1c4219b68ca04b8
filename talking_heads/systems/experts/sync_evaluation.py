r"""Checks the LSE evaluator on a dataset: planted audio shifts, mismatched audio, speed.

Command: `python -m experiments.experts.sync_eval`.

For every clip of the main split and of each held-out split (reported separately):
  * shift: the audio is shifted by k = -M .. M frames (M = `max_shift`, 640 samples a frame),
    trimmed and zero-padded to its length, with k > 0 advancing it (the content of frame v + k
    plays at frame v), which syncnet_python's convention reports as AV offset +k
    (`talking_heads.metrics.lse`); a shift counts as recovered when the offset equals k exactly.
    Reported: % of (clip, k) pairs recovered, % of clips with every k recovered, accuracy per k
    and the confusion of the errors (true k -> recovered offsets);
  * mismatch: LSE-C / LSE-D of each clip with its own audio (in sync) and with the audio of the
    next clip of the split (another utterance), and the ratio of the mean in-sync LSE-C to the
    mean mismatched LSE-C (the issue's "at least twice");
  * speed: evaluator frames/s = video frames scored / seconds of one in-sync evaluation (video
    and audio embeddings and the distance curve), compilation excluded (warm-up clip first).
Dataset clips are face crops and are scored as they are. The report names the expert (the
official S, or a SyncNet trained here).
"""

from __future__ import annotations

import collections
import time
from typing import Any

from absl import logging
import numpy as np

from talking_heads.io import dataset as dataset_lib
from talking_heads.io import reports
from talking_heads.metrics import lse
from talking_heads.metrics import sync_experts

def shift_audio(audio: np.ndarray, k: int) -> np.ndarray:
  """Audio advanced by k frames (k < 0: delayed), trimmed and zero-padded to its length."""
  s = abs(k) * lse.SAMPLES_PER_FRAME
  if s >= audio.shape[0]:
    return np.zeros_like(audio)
  if k > 0:
    return np.concatenate([audio[s:], np.zeros(s, audio.dtype)])
  if k < 0:
    return np.concatenate([np.zeros(s, audio.dtype), audio[:-s]])
  return audio


def _score(expert: sync_experts.SyncExpert, video_embeddings: np.ndarray, audio: np.ndarray,
           clip_id: str) -> lse.SyncScore:
  sound = expert.embed_audio(audio, clip_id=clip_id)
  n = min(video_embeddings.shape[0], sound.shape[0])
  return lse.sync_score(video_embeddings[:n], sound[:n], clip_id=clip_id)


def evaluate_split(expert: sync_experts.SyncExpert, clips: list[dataset_lib.Clip],
                   max_shift: int) -> dict[str, Any]:
  """Shift recovery, in-sync vs mismatched LSE and speed over one split's clips."""
  if len(clips) < 2:
    raise ValueError(f"sync evaluation needs at least 2 clips per split (mismatched audio), got "
                     f"{len(clips)}")
  shifts = list(range(-max_shift, max_shift + 1))
  recovered = collections.defaultdict(list)     # k -> [bool]
  confusion = collections.defaultdict(collections.Counter)   # k -> Counter(wrong offsets)
  in_sync, mismatched, per_clip = [], [], []
  frames_scored, seconds = 0, 0.0
  for i, clip in enumerate(clips):
    frames, audio = np.asarray(clip.frames), np.asarray(clip.audio)
    begin = time.perf_counter()
    video = expert.embed_video(frames, clip_id=clip.id)
    sync = _score(expert, video, audio, clip.id)
    seconds += time.perf_counter() - begin
    frames_scored += frames.shape[0]
    offsets = {}
    for k in shifts:
      score = sync if k == 0 else _score(expert, video, shift_audio(audio, k), f"{clip.id} shift {k}")
      offsets[k] = score.offset
      recovered[k].append(score.offset == k)
      if score.offset != k:
        confusion[k][score.offset] += 1
    other = clips[(i + 1) % len(clips)]
    wrong = _score(expert, video, np.asarray(other.audio), f"{clip.id} with {other.id}'s audio")
    in_sync.append(sync)
    mismatched.append(wrong)
    per_clip.append({"clip": clip.id, "frames": int(frames.shape[0]), "lse_c": sync.confidence,
                     "lse_d": sync.distance, "offset": sync.offset,
                     "mismatched_audio": other.id, "mismatched_lse_c": wrong.confidence,
                     "mismatched_lse_d": wrong.distance,
                     "recovered_offsets": {str(k): v for k, v in offsets.items()}})
  pairs = [ok for k in shifts for ok in recovered[k]]
  all_exact = [all(c["recovered_offsets"][str(k)] == k for k in shifts) for c in per_clip]
  sync_c = float(np.mean([s.confidence for s in in_sync]))
  wrong_c = float(np.mean([s.confidence for s in mismatched]))
  return {
      "num_clips": len(clips),
      "shift_exact_percent": 100.0 * float(np.mean(pairs)),
      "clips_all_shifts_exact_percent": 100.0 * float(np.mean(all_exact)),
      "shift_accuracy": {str(k): 100.0 * float(np.mean(recovered[k])) for k in shifts},
      "shift_errors": {str(k): {str(o): c for o, c in sorted(confusion[k].items())}
                       for k in shifts if confusion[k]},
      "in_sync": {"lse_c": sync_c, "lse_d": float(np.mean([s.distance for s in in_sync]))},
      "mismatched": {"lse_c": wrong_c, "lse_d": float(np.mean([s.distance for s in mismatched]))},
      "lse_c_ratio": sync_c / wrong_c if wrong_c > 0 else float("inf"),
      "frames_per_second": frames_scored / seconds,
      "clips": per_clip,
  }


def run(expert: sync_experts.SyncExpert, expert_text: str, dataset_root: str, splits: list[str],
        max_shift: int, max_clips: int = 0) -> dict[str, Any]:
  """The whole measurement over `splits` (the first is the main one; absent others are skipped)."""
  start = time.time()
  data = dataset_lib.Dataset(dataset_root)
  if splits[0] not in data.splits():
    raise ValueError(f"{dataset_root}: no split {splits[0]!r} (splits: {data.splits()})")
  present = [s for s in splits if s in data.splits()]
  # Warm-up: compile the expert's batch shapes before anything is timed.
  first = data.clips(splits[0])[0]
  compile_start = time.perf_counter()
  sync_experts.score_clip(expert, np.asarray(first.frames), np.asarray(first.audio), clip_id=first.id)
  compile_s = time.perf_counter() - compile_start
  results = {}
  for split in present:
    clips = sorted(data.clips(split), key=lambda c: c.id)
    if max_clips:
      clips = clips[:max_clips]
    logging.info("sync_eval: split %s, %d clips", split, len(clips))
    results[split] = evaluate_split(expert, clips, max_shift)
  return {
      "command": reports.command_line(),
      "machine": reports.machine_description(),
      "expert": expert.describe(), "expert_note": expert_text,
      "dataset": dataset_root, "max_shift": max_shift,
      "skipped_splits": [s for s in splits if s not in present],
      "warmup_s": round(compile_s, 2),
      "splits": results, "duration_s": round(time.time() - start, 2),
  }


def markdown(results: dict[str, Any]) -> str:
  """The report as a markdown table per split, with command, machine and duration."""
  lines = [
      "# LSE evaluator check", "",
      f"- command: `{results['command']}`",
      f"- machine: {results['machine']}",
      f"- expert: {results['expert']['name']} (comparable with papers: "
      f"{'yes' if results['expert']['comparable_with_papers'] else 'no'})",
      f"- dataset: {results['dataset']}; shifts -{results['max_shift']}..{results['max_shift']} frames",
      f"- duration: {results['duration_s']:.1f} s (warm-up/compile {results['warmup_s']:.1f} s)", "",
      "| split | clips | shift exact % | clips all exact % | LSE-C in sync | LSE-C mismatched | "
      "LSE-C ratio | LSE-D in sync | LSE-D mismatched | frames/s |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for split, r in results["splits"].items():
    lines.append(
        f"| {split} | {r['num_clips']} | {r['shift_exact_percent']:.1f} | "
        f"{r['clips_all_shifts_exact_percent']:.1f} | {r['in_sync']['lse_c']:.3f} | "
        f"{r['mismatched']['lse_c']:.3f} | {r['lse_c_ratio']:.2f} | {r['in_sync']['lse_d']:.3f} | "
        f"{r['mismatched']['lse_d']:.3f} | {r['frames_per_second']:.1f} |")
  lines += ["", "Errors (true shift k: recovered offset x count):", ""]
  for split, r in results["splits"].items():
    errors = "; ".join(f"k={k}: " + ", ".join(f"{o} x{c}" for o, c in e.items())
                       for k, e in r["shift_errors"].items()) or "none"
    lines.append(f"- {split}: {errors}")
  return "\n".join(lines) + "\n"
