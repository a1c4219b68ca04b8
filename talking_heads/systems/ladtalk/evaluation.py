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
  * LSE-C / LSE-D with the independent expert (`sync_expert.lse_scorer`: the official S when
    `weights_dir` holds syncnet_v2.model, else S's architecture trained here by `syncnet_eval`,
    which Wav2Lip never trained against; the colour expert only when neither exists), also for
    the ground-truth clips as the ceiling; the tables name the expert. When the scorer is not the
    colour expert, the colour expert scores the same videos too and the two experts' agreement
    (Spearman's rho of LSE-C over systems and clips) is reported.
Command: `python -m experiments.ladtalk.tables` (JSON + markdown with command, machine, duration).
"""

from __future__ import annotations

import re
import time
from typing import Any

from absl import logging
import numpy as np

from talking_heads.io import dataset as dataset_lib
from talking_heads.metrics import fid as fid_lib
from talking_heads.metrics import suite
from talking_heads.metrics import sync_experts
from talking_heads.systems import reproduction
from talking_heads.systems import video_inference
from talking_heads.systems.experts import sync_expert
from talking_heads.systems.ladtalk import inference

SYSTEMS = ("wav2lip", "ladtalk", "ground_truth")
FID_UNAVAILABLE = "unavailable: pt_inception-2015-12-05 missing from --weights_dir"


def evaluate_split(clips: list[dataset_lib.Clip], wav2lip: inference.Wav2LipModel,
                   sovqae: inference.SOVQAEModel, expert: sync_experts.SyncExpert,
                   extractor: fid_lib.InceptionFeatureExtractor | None,
                   options: video_inference.Options,
                   second_expert: sync_experts.SyncExpert | None = None) -> dict[str, Any]:
  """Per-clip and mean scores of the three systems on `clips` (and the experts' agreement)."""
  scorer = suite.VideoScorer(("psnr", "psnr_lower_half", "lse"), expert=expert, sliding=True,
                             second_expert=second_expert)
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
                     for k in ("psnr", "psnr_lower_half", "lse_c", "lse_d", "lse_c_second",
                               "lse_d_second") if k in rows[0]}
    if name != "ground_truth":
      summary[name]["fid"] = fid[name].value()
      summary[name]["frames_per_second"] = total_frames / max(seconds[name], 1e-9)
  return {"clips": len(clips), "frames": total_frames, "summary": summary, "per_clip": per_clip,
          "expert_agreement": sync_expert.agreement(r for rows in per_clip.values() for r in rows)}


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
  lines += agreement_lines(results)
  return "\n".join(lines) + "\n"


def agreement_lines(results: dict[str, Any]) -> list[str]:
  """The experts' agreement per split (markdown), when a second expert scored the videos."""
  if not results.get("second_lse_expert"):
    return []
  lines = ["", f"Experts' agreement: LSE-C of every (system, clip) also scored by "
               f"{results['second_lse_expert']}:", ""]
  for split, r in results["splits"].items():
    a = r.get("expert_agreement") or {}
    if a:
      s = r["summary"]
      second = ", ".join(f"{n} {suite.format_value(s[n]['lse_c_second'])}" for n in s
                         if "lse_c_second" in s[n])
      rho = suite.format_value(a["spearman_lse_c"])   # "nan" when a side is constant
      lines.append(f"- {split}: Spearman rho {rho} over {a['pairs']} (system, clip) pairs; mean "
                   f"LSE-C with the second expert: {second}")
  return lines


def run(dataset: str, identity: str, splits: list[str], wav2lip_workdir: str, sovqae_workdir: str,
        syncnet_workdir: str, weights_dir: str = "", max_clips: int = 0, *,
        sync_eval_workdir: str = "") -> dict[str, Any]:
  """Evaluates both systems on each split; returns the JSON-ready results (no command/machine).

  LSE: `sync_expert.lse_scorers` (official S in `weights_dir`, else `sync_eval_workdir`, else the
  colour expert of `syncnet_workdir`, which then is the only one)."""
  wav2lip = inference.load_wav2lip(wav2lip_workdir)
  sovqae = inference.load_sovqae(sovqae_workdir)
  expert, second = sync_expert.lse_scorers(sync_eval_workdir=sync_eval_workdir,
                                           weights_dir=weights_dir, syncnet_workdir=syncnet_workdir)
  extractor = None
  if weights_dir:   # a folder without the file raises MissingWeightsError naming it
    from talking_heads.pretrained import inception as inception_convert  # pylint: disable=g-import-not-at-top
    extractor = fid_lib.InceptionFeatureExtractor(inception_convert.load_inception(weights_dir))
  options = video_inference.Options(box="full")
  data = dataset_lib.Dataset(dataset)
  out = {}
  for split in splits:
    clips = data.identity_clips(split, identity)[:max_clips or None]
    logging.info("%s: %d clips", split, len(clips))
    out[split] = evaluate_split(clips, wav2lip, sovqae, expert, extractor, options, second)
  return {"identity": identity, "lse_expert": sync_expert.scorer_label(expert),
          "second_lse_expert": sync_expert.scorer_label(second) if second else None,
          "wav2lip_workdir": wav2lip_workdir, "sovqae_workdir": sovqae_workdir, "splits": out}


# ------------------------------------------------------------------------------ paper tables

_NOT_REIMPLEMENTED = "method not reimplemented in talking_heads"
_POST_PROCESS = "post-process restorer not reimplemented in talking_heads"
_OTHERS = {"table_1_usual": ("DINet", "IP-LAP", "GeneFace", "GeneFace++", "SyncTalk"),
           "table_2": ("DINet", "IP-LAP", "GeneFace++", "SyncTalk")}
_PAPER_NAMES = {"wav2lip": "Wav2Lip", "ladtalk": "LaDTalk (Ours)", "ground_truth": "Ground truth"}
_SPLITS = {"test": "test split (held-out utterances, own voice)",
           "heldout_voice": "heldout_voice split (voices never heard in training)"}


def _tables_label(results_dir: str, results: dict[str, Any], split: str) -> str:
  """Data, split, both networks' sizes and steps, machine and LSE expert of one split's rows."""
  parts = []
  for stage in ("wav2lip", "sovqae"):
    workdir = results[f"{stage}_workdir"]
    config = reproduction.stage_config(results_dir, stage, workdir)
    if config is None:
      parts.append(f"{stage}: no config in {workdir} or {results_dir}")
    elif stage == "wav2lip":
      parts.append(f"Wav2Lip width {config['model']['width']:g} {config['data']['image_size']} px "
                   f"{config['steps']} steps")
    else:
      parts.insert(0, f"{config['variant']}: data {config['data']['root']}")
      parts.append(f"SOVQAE {config['data']['image_size']} px {config['steps']} steps")
  s = results["splits"][split]
  parts.insert(1, f"{results['identity']}, {_SPLITS.get(split, split)}: {s['clips']} clips / "
                  f"{s['frames']} frames")
  return "; ".join(parts + [results["machine"], f"LSE: {results['lse_expert']}"])


def _fid_reason(summary: dict[str, Any]) -> list[dict[str, str]]:
  fid = summary["ladtalk"].get("fid")
  if isinstance(fid, (int, float)):
    return []
  return [reproduction.unavailable("FID", "no public Inception weights here "
                                          f"({str(fid).removeprefix('unavailable: ')})")]


def _summary_rows(summary: dict[str, Any], names: tuple[str, ...], columns: dict[str, str],
                  label: str, source: str) -> list[dict[str, Any]]:
  return [reproduction.row(_PAPER_NAMES[n], {c: summary[n].get(k) for c, k in columns.items()},
                           label, source) for n in names]


def _video_tables(results_dir: str) -> list[dict[str, Any]]:
  """Tables 1 (Usual Dataset), 2 (average and per audio) and 5 from the Tables 1/2 results."""
  ids = ("table_1_usual", "table_2", "table_2_per_audio", "table_5")
  found = reproduction.read_json(results_dir, "ladtalk_tables.json", "tables.json")
  if found is None:
    return [reproduction.not_produced(
        i, f"no results in {results_dir}: run `python -m experiments.main` (writes "
           "runs/main/ladtalk/ladtalk_tables.json) or `python -m experiments.ladtalk.tables "
           f"--out={results_dir}/tables.json`") for i in ids]
  source, results = found
  every = {"PSNR": "psnr", "FID": "fid", "LSE-C": "lse_c", "LSE-D": "lse_d"}
  lse = {"LSE-C": "lse_c", "LSE-D": "lse_d"}
  out = []
  if "test" in results["splits"]:
    summary = results["splits"]["test"]["summary"]
    label = _tables_label(results_dir, results, "test")
    out.append(reproduction.table(
        "table_1_usual", _summary_rows(summary, tuple(_PAPER_NAMES), every, label, source),
        _fid_reason(summary) + [reproduction.unavailable(m, _NOT_REIMPLEMENTED)
                                for m in _OTHERS["table_1_usual"]]
        + [reproduction.unavailable(m, _POST_PROCESS) for m in ("CodeFormer*", "GFPGAN*")]))
    out.append(reproduction.table(
        "table_5", _summary_rows(summary, ("ladtalk", "ground_truth"), every, label, source),
        _fid_reason(summary) + [
            reproduction.unavailable(m, "base model not reimplemented in talking_heads (the "
                                        "SOVQAE runs on our Wav2Lip only)")
            for m in ("GeneFace++", "GeneFace++ + SOVQAE", "SyncTalk", "SyncTalk + SOVQAE")]))
  else:
    out += [reproduction.not_produced(i, f"{source} has no test split")
            for i in ("table_1_usual", "table_5")]
  if "heldout_voice" in results["splits"]:
    split = results["splits"]["heldout_voice"]
    label = _tables_label(results_dir, results, "heldout_voice")
    others = [reproduction.unavailable(m, _NOT_REIMPLEMENTED) for m in _OTHERS["table_2"]]
    out.append(reproduction.table(
        "table_2", _summary_rows(split["summary"], tuple(_PAPER_NAMES), lse, label, source),
        others))
    per_clip = [reproduction.row(f"{_PAPER_NAMES[n]}, clip {r['clip']}",
                                 {c: r[k] for c, k in lse.items()}, label, source)
                for n in _PAPER_NAMES for r in split["per_clip"][n]]
    out.append(reproduction.table("table_2_per_audio", per_clip, [reproduction.unavailable(
        "audio 1-10", "the paper's 10 out-of-domain audios are not public; our rows are the "
                      "held-out-voice clips, named by clip id")] + others))
  else:
    out += [reproduction.not_produced(i, f"{source} has no heldout_voice split")
            for i in ("table_2", "table_2_per_audio")]
  return out


def _regulariser_table(results_dir: str) -> dict[str, Any]:
  """Table 3 from `experiments.ladtalk.regulariser_ablation`."""
  found = reproduction.read_json(results_dir, "regulariser_ablation.json")
  if found is None:
    return reproduction.not_produced(
        "table_3", f"no results in {results_dir}: run `python -m experiments.ladtalk."
                   f"regulariser_ablation --out={results_dir}/regulariser_ablation.json`")
  source, results = found
  variant, _, overrides = results["base"].partition(",")
  settings = ", ".join(f"{k}={v}" for k, v in re.findall(r"([\w.]+)=(\([^)]*\)|[^,]*)",
                                                          overrides)
                       if not k.endswith("_every") and k != "total_steps")
  measured, with_lse = [], False
  for v in results["variants"]:
    method = {"off": "No regulariser (not in the paper)", "average": "Average Dist., θ = {:g}",
              "minimal": "Minimal Dist., θ = {:g}"}[v["mode"]].format(v["theta"])
    theta = {} if v["mode"] == "off" else {"θ": v["theta"]}
    label = f"{variant} SOVQAE config, {settings}; {v['steps']} steps; {results['machine']}; "
    if "ladtalk_heldout_voice" in v:
      lad, with_lse = v["ladtalk_heldout_voice"], True
      values = {"PSNR": lad["psnr"], "LSE-C": lad["lse_c"], "LSE-D": lad["lse_d"], **theta}
      label += ("LaDTalk (our Wav2Lip + this SOVQAE) on held-out-voice clips; LSE: "
                + v.get("lse_expert", "the SyncNet_color trained here (not comparable)"))
    else:
      values = {"PSNR": v["eval"]["psnr"], **theta}
      label += "PSNR = the SOVQAE's reconstruction of held-out frames (not LaDTalk videos)"
    measured.append(reproduction.row(method, values, label, source))
  truth = next((v for v in results["variants"] if "ground_truth_heldout_voice" in v), None)
  if truth is not None:   # the same clips' own video: the LSE ceiling (no SOVQAE, no PSNR)
    gt = truth["ground_truth_heldout_voice"]
    measured.append(reproduction.row(
        "Ground truth (not in the paper)", {"LSE-C": gt["lse_c"], "LSE-D": gt["lse_d"]},
        f"the held-out-voice clips' true video; LSE: {truth['lse_expert']}",
        source))
  missing = [reproduction.unavailable("FID", "not computed by the ablation (needs the public "
                                             "Inception weights)")]
  if not with_lse:
    missing += [reproduction.unavailable(c, "not measured: the ablation ran without "
                                            "--wav2lip_workdir / --syncnet_workdir (no LaDTalk "
                                            "videos)") for c in ("LSE-C", "LSE-D")]
  return reproduction.table("table_3", measured, missing)


def _denoise_table(results_dir: str) -> dict[str, Any]:
  """Fig. 2's PSNRs from `experiments.ladtalk.denoise_regions` (whole frame, and in the region)."""
  found = reproduction.read_json(results_dir, "denoise_regions.json")
  if found is None:
    return reproduction.not_produced(
        "figure_2", f"no results in {results_dir}: run `python -m experiments.ladtalk."
                    f"denoise_regions --workdir=<sovqae workdir> --out={results_dir}`")
  source, r = found
  blur, noise = r["blur"], r["noise"]
  strengths = (f"blur sigma {blur['strength']:.2f} px, noise std {noise['strength']:.1f}"
               + (" (calibrated to the paper's degraded PSNR)" if blur.get("calibrated") else ""))
  label = (f"data {r['dataset']}, {r['identity']}, {len(r['frames'])} {r['split']} frames, one "
           f"{r['region_side']} px square region each; SOVQAE {r['workdir']} step {r['step']}, "
           f"{r['image_size']} px; {strengths}; {r['machine']}")
  measured = []
  for method, key in (("Degraded input", "degraded_psnr"), ("SOVQAE output", "output_psnr")):
    measured.append(reproduction.row(method, {"PSNR (Gaussian blur)": blur[key],
                                              "PSNR (Gaussian noise)": noise[key]}, label, source))
    measured.append(reproduction.row(
        f"{method}, inside the region (not in the paper)",
        {"PSNR (Gaussian blur)": blur[f"region_{key}"],
         "PSNR (Gaussian noise)": noise[f"region_{key}"]}, label, source))
  return reproduction.table("figure_2", measured, [])


def paper_rows(results_dir: str) -> list[dict[str, Any]]:
  """Our results in `results_dir` as rows of LaDTalk's tables (`System.reproduce`).

  `results_dir`: a main-job folder (`runs/main/ladtalk`, ladtalk_tables.json) or a results folder
  (`experiments/results/ladtalk_demo`: tables.json, regulariser_ablation.json,
  denoise_regions.json).
  """
  return _video_tables(results_dir) + [
      reproduction.not_produced("table_1_hf", "the HF videos are the authors' proprietary "
                                              "high-resolution videos (not public)"),
      _regulariser_table(results_dir),
      reproduction.not_produced("table_4", "not run: no training-length sweep is implemented "
                                           "(SOVQAEs trained on 1-6 min and the full 8'40\" of one "
                                           "Usual Dataset video; no real dataset here)"),
      _denoise_table(results_dir)]
