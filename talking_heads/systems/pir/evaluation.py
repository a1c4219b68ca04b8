"""PIR's Tables 1 and 2 at small scale on one corpus identity, and the check of component A's
expressions against the corpus's true ones.

Command: `python -m experiments.pir.tables` (flags named after `run`'s arguments).

Every clip of the identity in a split (its first `max_frames` frames) is both the target and the
ground truth: its frames, pose, K, identity and masks (`inference.target_from_clip`) and its
own audio drive PIR (`inference.run_arrays`), and the written frames are scored against its
frames:
  "test"           held-out utterances in the identity's own voice: Table 1 (self-reenactment;
                   the paper's last 25 s of each video).
  "heldout_voice"  the identity's face driven by voices component A never heard (the corpus
                   renders their true video too): Table 2 (cross-audio; the paper's unpaired
                   audio), AVConf; the other metrics are recorded as well.
Metrics (`metrics.suite.VideoScorer`, frames as they are: corpus frames are the face):
  SSIM    Wang et al.'s gaussian (sigma 1.5) SSIM, `ssim_wang` (the paper's [33]), whole frame;
  PSNR    whole frame, 8 bit (outside the inpaint mask the written frame is the target's own:
          `psnr_inpainted` is the PSNR over the masked pixels alone, not in the paper);
  CPBD    `metrics.cpbd.video_cpbd`, the mean over frames (Narvekar & Karam; parity-tested
          against the cpbd package); unavailable for frames under its 64 x 64 block;
  LMD     ATVGnet's sum over the 20 mouth landmarks (pixels at the frame size) of the
          corpus-trained face regressor (`experts.face_regressor`, `regressor_workdir`; the paper
          uses dlib); without a regressor it is reported as unavailable;
  AVConf  LSE-C of `sync_expert.lse_scorer` (the official S when `weights_dir` holds
          syncnet_v2.model, else the independent `syncnet_eval` expert, else the colour expert;
          the results name it), with LSE-D beside it.
The true frames get the same CPBD, AVConf and LSE-D (the "Ground Truth" row; SSIM 1 and LMD 0 by
definition, PSNR N/A as in the paper).

Expression check (geometric, not in the paper): `expression_mse`, the mean squared error over
frames and the E coefficients between A's expressions (autoregressive in windows of k, as at
inference) and the clip's true ones, beside `expression_variance`, the true expressions'
variance over the clip's frames (the error of predicting their per-clip mean: an A that ignored
the audio would score about this or worse).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
from absl import logging

from talking_heads.io import dataset as dataset_lib
from talking_heads.metrics import cpbd as cpbd_lib
from talking_heads.metrics import suite
from talking_heads.metrics import sync_experts
from talking_heads.systems import reproduction
from talking_heads.systems import video_inference
from talking_heads.systems.experts import face_regressor
from talking_heads.systems.experts import sync_expert
from talking_heads.systems.pir import inference

SPLITS = ("test", "heldout_voice")
SYSTEMS = ("pir", "ground_truth")
LMD_UNAVAILABLE = "unavailable: no face regressor (regressor_workdir) for the mouth landmarks"
SAMPLES_PER_FRAME = inference.SAMPLES_PER_FRAME


def clip_target(data: dataset_lib.Dataset, clip: dataset_lib.Clip,
                max_frames: int = 0) -> tuple[inference.Target, np.ndarray]:
  """(target, audio [640 n]) of a clip's first n = min(max_frames (0: all), its frames, its whole
  frames of audio) frames, so that PIR generates exactly its n frames."""
  n = min(clip.num_frames, clip.num_samples // SAMPLES_PER_FRAME)
  n = min(n, max_frames) if max_frames else n
  target = inference.target_from_clip(data, clip)
  cut = lambda x: None if x is None else x[:n]
  target = dataclasses.replace(target, frames=target.frames[:n], landmarks=target.landmarks[:n],
                               pose=target.pose[:n], head_mask=cut(target.head_mask),
                               expression=cut(target.expression))
  return target, np.asarray(clip.audio[:n * SAMPLES_PER_FRAME], np.float32)


def expression_error(generated: np.ndarray, truth: np.ndarray) -> dict[str, float]:
  """expression_mse and expression_variance (module docstring) of [T, E] expressions."""
  truth = np.asarray(truth, np.float64)
  return {"expression_mse": float(np.mean(np.square(np.asarray(generated, np.float64) - truth))),
          "expression_variance": float(np.mean(np.var(truth, axis=0)))}


def psnr_inside(frames: np.ndarray, truth: np.ndarray, masks: np.ndarray) -> float:
  """PSNR (8 bit) over the pixels inside `masks` [T, H, W, 1] of all frames [T, H, W, 3]."""
  weight = np.broadcast_to(masks > 0, frames.shape)
  error = np.square(frames.astype(np.float64) - truth.astype(np.float64))[weight]
  return float(10.0 * np.log10(255.0 ** 2 / max(float(np.mean(error)), 1e-10)))


def video_cpbd(frames: np.ndarray) -> float | str:
  """Mean CPBD of uint8 frames [T, H, W, 3], or why not ("unavailable: ...", e.g. frames under
  its 64 x 64 block)."""
  try:
    return float(cpbd_lib.video_cpbd(frames))
  except ValueError as e:
    return f"unavailable: {e}"


def _means(rows: list[dict[str, Any]]) -> dict[str, float | str]:
  """The mean of every numeric key of the rows (the first row's keys); a text (why a metric is
  unavailable) is kept as it is."""
  return {k: float(np.mean([r[k] for r in rows])) if isinstance(v, (int, float)) else v
          for k, v in rows[0].items() if k not in ("clip", "frames")}


def evaluate_split(model: inference.PirModel, data: dataset_lib.Dataset,
                   clips: list[dataset_lib.Clip], scorer: suite.VideoScorer,
                   truth_scorer: suite.VideoScorer, options: video_inference.Options,
                   max_frames: int = 0) -> dict[str, Any]:
  """Per-clip and mean scores of PIR and of the true frames on `clips` (module docstring)."""
  per_clip: dict[str, list[dict[str, Any]]] = {s: [] for s in SYSTEMS}
  seconds = 0.0
  for clip in clips:
    target, audio = clip_target(data, clip, max_frames)
    truth = np.asarray(target.frames)
    start = time.perf_counter()
    result = inference.run_arrays(model, target, audio, options, audio_id=clip.id)
    seconds += time.perf_counter() - start
    frames = result.frames
    if frames.shape != truth.shape:
      raise ValueError(f"{clip.id}: PIR made {frames.shape} for the true {truth.shape}")
    scores = scorer.score(frames, truth, audio, clip_id=clip.id)
    per_clip["pir"].append({"clip": clip.id, "frames": int(frames.shape[0]), **scores,
                            "psnr_inpainted": psnr_inside(frames, truth, result.inpaint_masks),
                            "cpbd": video_cpbd(frames),
                            **expression_error(result.expressions, target.expression)})
    per_clip["ground_truth"].append({"clip": clip.id, "frames": int(truth.shape[0]),
                                     **truth_scorer.score(truth, audio=audio, clip_id=clip.id),
                                     "cpbd": video_cpbd(truth)})
    logging.info("%s: %s", clip.id, per_clip["pir"][-1])
  frames = sum(r["frames"] for r in per_clip["pir"])
  summary = {name: _means(rows) for name, rows in per_clip.items()}
  summary["pir"]["frames_per_second"] = frames / max(seconds, 1e-9)
  if "lmd" not in summary["pir"]:
    summary["pir"]["lmd"] = LMD_UNAVAILABLE
  return {"clips": len(clips), "frames": frames, "summary": summary, "per_clip": per_clip,
          "expert_agreement": sync_expert.agreement(r for rows in per_clip.values() for r in rows)}


def scorers(expert: sync_experts.SyncExpert, regressor_workdir: str = "",
            second_expert: sync_experts.SyncExpert | None = None
            ) -> tuple[suite.VideoScorer, suite.VideoScorer]:
  """(PIR's scorer: PSNR, SSIM, LSE and, with a regressor, LMD; the true frames' scorer: LSE)."""
  metrics, landmarks = ["psnr", "ssim", "lse"], None
  if regressor_workdir:
    regressor = face_regressor.load_face_regressor(regressor_workdir)
    metrics.append("lmd")
    landmarks = lambda frames: regressor.predict(frames)["landmarks"]
  return (suite.VideoScorer(metrics, expert=expert, landmarks=landmarks,
                            second_expert=second_expert),
          suite.VideoScorer(("lse",), expert=expert, second_expert=second_expert))


def run(dataset: str, identity: str, audio2exp_workdir: str, renderer_workdir: str, *,
        triplane_workdir: str = "", splits: tuple[str, ...] = SPLITS, syncnet_workdir: str = "",
        sync_eval_workdir: str = "", weights_dir: str = "", regressor_workdir: str = "",
        max_clips: int = 0, max_frames: int = 0, batch_size: int = 16) -> dict[str, Any]:
  """Evaluates PIR on each split of `identity`; returns the JSON-ready results (no command,
  machine or duration).

  LSE: `sync_expert.lse_scorers` (syncnet_v2.model in `weights_dir`, else `sync_eval_workdir`,
  else the colour expert of `syncnet_workdir`, which is otherwise the second expert).

  Raises:
    ValueError: a split without clips of the identity, or no LSE expert.
  """
  model = inference.load(audio2exp_workdir, renderer_workdir, triplane_workdir or None)
  expert, second = sync_expert.lse_scorers(sync_eval_workdir=sync_eval_workdir,
                                           weights_dir=weights_dir,
                                           syncnet_workdir=syncnet_workdir)
  scorer, truth_scorer = scorers(expert, regressor_workdir, second)
  options = video_inference.Options(box="full", batch_size=batch_size)
  data = dataset_lib.Dataset(dataset)
  out = {}
  for split in splits:
    clips = data.identity_clips(split, identity)[:max_clips or None]
    logging.info("%s: %d clips", split, len(clips))
    out[split] = evaluate_split(model, data, clips, scorer, truth_scorer, options, max_frames)
  return {"identity": identity, "lse_expert": sync_expert.scorer_label(expert),
          "second_lse_expert": sync_expert.scorer_label(second) if second else None,
          "lmd": "face regressor " + regressor_workdir if regressor_workdir else LMD_UNAVAILABLE,
          "context": model.context, "sources": model.sources,
          "workdirs": {"pir_audio2exp": audio2exp_workdir, "pir_renderer": renderer_workdir,
                       "pir_triplane": model.sources["pir_triplane"].rpartition(" step ")[0]},
          "splits": out}


_COLUMNS = {"SSIM": "ssim_wang", "PSNR": "psnr", "PSNR inpainted": "psnr_inpainted",
            "CPBD": "cpbd", "LMD": "lmd", "AVConf": "lse_c",
            "LSE-D": "lse_d", "expression MSE": "expression_mse",
            "expression variance": "expression_variance", "frames/s": "frames_per_second"}


def markdown(results: dict[str, Any]) -> str:
  lines = [f"# PIR Tables 1/2 at small scale ({results['identity']}, k = {results['context']})",
           "", f"Command: `{results.get('command', '-')}`  ",
           f"Machine: {results.get('machine', '-')}  ",
           f"Duration: {results.get('duration_s', '-')} s; LSE expert: {results['lse_expert']}; "
           f"LMD: {results['lmd']}", "",
           "| split | system | " + " | ".join(_COLUMNS) + " |",
           "|---|---|" + "---|" * len(_COLUMNS)]
  for split, r in results["splits"].items():
    for name, s in r["summary"].items():
      lines.append(f"| {split} ({r['clips']} clips, {r['frames']} frames) | {name} | "
                   + " | ".join(suite.format_value(s.get(k, "-")) for k in _COLUMNS.values())
                   + " |")
  lines += ["", "Expression check: A's autoregressive expressions against the corpus's true ones "
                "(mean squared error per coefficient) beside the true expressions' variance "
                "(the error of their per-clip mean)."]
  return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ paper tables

_NOT_REIMPLEMENTED = "method not reimplemented in talking_heads"
_SAME_IDENTITY = ("not yet evaluated on PIR's clips (the same-identity comparison: LaDTalk's "
                  "Wav2Lip and DAE-Talker have their own tables, `--paper=ladtalk` / "
                  "`--paper=dae_talker`)")
_SPLIT_TEXT = {"test": "test split (held-out utterances, own voice; self-reenactment)",
               "heldout_voice": "heldout_voice split (voices never heard in training)"}
_NO_REAL_DATA = "no real dataset here ({}: the video released by {})"


def _label(results_dir: str, results: dict[str, Any], split: str) -> str:
  """Data, split, the three components' sizes and steps, machine and experts of one split."""
  parts = []
  for stage, short in (("pir_audio2exp", "A"), ("pir_triplane", "B"), ("pir_renderer", "C")):
    workdir = results["workdirs"][stage]
    config = reproduction.stage_config(results_dir, stage, workdir)
    if config is None:
      parts.append(f"{short}: no config in {workdir} or {results_dir}")
      continue
    if stage == "pir_audio2exp":
      parts.insert(0, f"{config['variant']}: data {config['data']['root']}")
      parts.append(f"A k = {config['data']['window']} {config['steps']} steps")
    else:
      parts.append(f"{short} {config['data']['image_size']} px {config['steps']} steps")
  s = results["splits"][split]
  parts.insert(1, f"{results['identity']}, {_SPLIT_TEXT.get(split, split)}: {s['clips']} clips "
                  f"/ {s['frames']} frames")
  return "; ".join(parts + [results.get("machine", "machine not recorded"),
                            f"AVConf: LSE-C of {results['lse_expert']}",
                            f"LMD: {results['lmd']} (pixels, not the paper's dlib LMD)"])


def _row(method: str, summary: dict[str, Any], columns: tuple[str, ...], label: str,
         source: str) -> dict[str, Any]:
  return reproduction.row(method, {c: summary.get(_COLUMNS[c]) for c in columns}, label, source)


def paper_rows(results_dir: str) -> list[dict[str, Any]]:
  """Our results in `results_dir` (pir_tables.json or tables.json, from
  `experiments.pir.tables`) as rows of PIR's tables (`System.reproduce`)."""
  found = reproduction.read_json(results_dir, "pir_tables.json", "tables.json")
  out = [reproduction.not_produced("table_1_testset1", _NO_REAL_DATA.format("Testset 1",
                                                                            "AD-NeRF")),
         reproduction.not_produced("table_1_testset2", _NO_REAL_DATA.format("Testset 2",
                                                                            "FACIAL")),
         reproduction.not_produced("table_3", "user study (15 volunteers): not run"),
         reproduction.not_produced("supp_table_1", "the context-length sweep (k in 1, 10, 50, "
                                                   "100) is not run yet")]
  if found is None:
    missing = (f"no results in {results_dir}: run `python -m experiments.pir.tables "
               f"--out={results_dir}/tables.json`")
    return out + [reproduction.not_produced(t, missing)
                  for t in ("table_1_hdtf", "table_2_adnerf", "table_2_facial")]
  source, results = found
  splits = results["splits"]
  if "test" in splits:
    summary, label = splits["test"]["summary"], _label(results_dir, results, "test")
    columns = ("SSIM", "PSNR", "CPBD", "LMD", "AVConf")
    missing = [reproduction.unavailable(m, _NOT_REIMPLEMENTED)
               for m in ("ATVG", "MakeItTalk", "PC-AVS")]
    missing.append(reproduction.unavailable("Wav2Lip", _SAME_IDENTITY))
    for column in ("LMD", "CPBD"):
      value = summary["pir"].get(_COLUMNS[column])
      if not isinstance(value, (int, float)):
        missing.append(reproduction.unavailable(column, str(value).removeprefix("unavailable: ")))
    out.append(reproduction.table("table_1_hdtf", [
        _row("Ground Truth", summary["ground_truth"], ("CPBD", "AVConf"), label, source),
        _row("PIR (Ours)", summary["pir"], columns, label, source)], missing))
  else:
    out.append(reproduction.not_produced("table_1_hdtf", f"{source} has no test split"))
  if "heldout_voice" in splits:
    summary = splits["heldout_voice"]["summary"]
    label = _label(results_dir, results, "heldout_voice")
    out.append(reproduction.table("table_2_adnerf", [
        _row("Ground truth (not in the paper)", summary["ground_truth"], ("AVConf",), label,
             source),
        _row("PIR (Ours), the corpus identity driven by held-out voices", summary["pir"],
             ("AVConf",), label, source)],
        [reproduction.unavailable("AD-NeRF", _NOT_REIMPLEMENTED)]))
    out.append(reproduction.not_produced(
        "table_2_facial", "one cross-audio set here (the corpus identity, held-out voices): its "
                          "rows are under table_2_adnerf; FACIAL not reimplemented"))
  else:
    out += [reproduction.not_produced(t, f"{source} has no heldout_voice split")
            for t in ("table_2_adnerf", "table_2_facial")]
  return out
