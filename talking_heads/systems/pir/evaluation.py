"""PIR's Tables 1 and 2 and supplementary Table 1 at small scale on one corpus identity, the
ablations the paper shows only in figures with numbers, and geometric checks against the corpus's
ground truth (A's expressions, landmarks of renders under a changed pose).

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
the audio would score about this or worse); `expression_lmd`, LMD between the morphable model's
mouth landmarks of A's expressions and of the true ones, both under the clip's identity, true
poses and K (pixels of the frames): A's lip error with B's and C's rendering error left out.

Supplementary Table 1 (`context_table`): LMD and AVConf of PIR with components A trained with
context lengths k (the paper's 1, 10, 50, 100), the same B and C, on the test clips.

Ablations and checks (`run_ablations`), on the test clips, landmark errors with the face
regressor (`metrics.landmarks.point_error`, pixels: placement counts, unlike LMD):
  without_rendering  B trained on the whole frame (`loss.region` = "frame") as the output:
                     PSNR outside the head against C's frames (`without_rendering`);
  without_jitter     renderers trained with s = 3 and s = 0 under K as fitted and perturbed at
                     test time: PSNR and landmark misalignment (`without_jitter`);
  geometry           A's expression error and the landmark error of renders under the target's
                     pose and a changed one against the morphable model's projection
                     (`pose_check`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import jax
import numpy as np
from absl import logging

from talking_heads.face import morphable
from talking_heads.io import dataset as dataset_lib
from talking_heads.metrics import cpbd as cpbd_lib
from talking_heads.metrics import landmarks as landmarks_lib
from talking_heads.metrics import suite
from talking_heads.metrics import sync_experts
from talking_heads.systems import reproduction
from talking_heads.systems import video_inference
from talking_heads.systems.experts import face_regressor
from talking_heads.systems.experts import sync_expert
from talking_heads.pipelines import base as pipelines_base
from talking_heads.rendering.camera import JITTER_PIXELS
from talking_heads.systems.pir import inference
from talking_heads.systems.pir import triplane as triplane_lib
from talking_heads.training import restore

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


def expression_lmd(target: inference.Target, generated: np.ndarray) -> float:
  """LMD (pixels) between the morphable model's projected mouth landmarks of expressions
  `generated` [T, E] and of the target's true ones, under its identity, poses and K."""
  n = generated.shape[0]
  project = lambda e: projected_landmarks(target.alpha, e, target.pose[:n], target.K)
  return float(landmarks_lib.lmd(project(generated), project(target.expression[:n])))


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
                   truth_scorer: suite.VideoScorer | None, options: video_inference.Options,
                   max_frames: int = 0) -> dict[str, Any]:
  """Per-clip and mean scores of PIR and of the true frames (unless `truth_scorer` is None) on
  `clips` (module docstring)."""
  per_clip: dict[str, list[dict[str, Any]]] = {
      s: [] for s in SYSTEMS if truth_scorer is not None or s == "pir"}
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
                            **expression_error(result.expressions, target.expression),
                            "expression_lmd": expression_lmd(target, result.expressions)})
    if truth_scorer is not None:
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
            "expression variance": "expression_variance", "expression LMD": "expression_lmd",
            "frames/s": "frames_per_second"}


def markdown(results: dict[str, Any]) -> str:
  """Tables 1/2 ("splits"), supplementary Table 1 ("context_length") and the ablations
  ("ablations"), whichever `results` holds."""
  lines = [f"# PIR at small scale ({results['identity']})", "",
           f"Command: `{results.get('command', '-')}`  ",
           f"Machine: {results.get('machine', '-')}  ",
           f"Duration: {results.get('duration_s', '-')} s"]
  if "splits" in results:
    lines += ["", f"## Tables 1/2 (k = {results['context']})", "",
              f"LSE expert: {results['lse_expert']}; LMD: {results['lmd']}", "",
              "| split | system | " + " | ".join(_COLUMNS) + " |",
              "|---|---|" + "---|" * len(_COLUMNS)]
    for split, r in results["splits"].items():
      for name, s in r["summary"].items():
        lines.append(f"| {split} ({r['clips']} clips, {r['frames']} frames) | {name} | "
                     + " | ".join(suite.format_value(s.get(k, "-")) for k in _COLUMNS.values())
                     + " |")
    lines += ["", "Expression check: A's autoregressive expressions against the corpus's true "
                  "ones (mean squared error per coefficient) beside the true expressions' "
                  "variance (the error of their per-clip mean); expression LMD: the morphable "
                  "model's mouth landmarks of A's expressions against those of the true ones."]
  if "context_length" in results:
    lines += context_markdown(results["context_length"])
  if "ablations" in results:
    lines += ablation_markdown(results["ablations"])
  return "\n".join(lines) + "\n"


def context_markdown(context: dict[str, Any]) -> list[str]:
  lines = ["", f"## Supplementary Table 1: context length k ({context['split']}, "
               f"{context['clips']} clips, {context['frames']} frames)", "",
           f"AVConf: LSE-C of {context['lse_expert']}; LMD: {context['lmd']}; B and C: "
           f"{context['triplane']}, {context['renderer']}", "",
           "| k | LMD | AVConf | LSE-D | expression MSE | expression variance | expression LMD |",
           "|---|---|---|---|---|---|---|"]
  fmt = suite.format_value
  for r in context["rows"]:
    lines.append(f"| {r['k']} | " + " | ".join(fmt(r.get(k, "-")) for k in _CONTEXT_KEYS) + " |")
  truth = context["ground_truth"]
  lines.append(f"| true frames | - | {fmt(truth['lse_c'])} | {fmt(truth['lse_d'])} | - | - | - |")
  lines += ["", "Expression LMD: the morphable model's mouth landmarks of A's expressions against "
                "those of the true ones (same identity, poses, K): A's lip error without the "
                "renderer's."]
  return lines


def ablation_markdown(ablations: dict[str, Any]) -> list[str]:
  fmt = suite.format_value
  lines = ["", f"## Ablations and geometric checks ({ablations['split']}, {ablations['clips']} "
               f"clips; landmarks: {ablations['landmarks']})", "", "### Without rendering", ""]
  rendering = ablations["without_rendering"]
  if isinstance(rendering, str):
    lines.append(rendering)
  else:
    lines += [f"B trained on the whole frame: {rendering['frame_triplane']}; scored at "
              f"{rendering['image_size']} px against the true frames.", "",
              "| output | PSNR outside the head | PSNR whole frame |", "|---|---|---|"]
    names = {"pir_written": "PIR, written frame (C inside the inpaint mask)",
             "pir_rendered": "PIR, C's whole rendered frame",
             "without_rendering": "without rendering: B's whole frame"}
    for name, s in rendering["summary"].items():
      lines.append(f"| {names[name]} | {fmt(s['psnr_outside_head'])} | {fmt(s['psnr'])} |")
  jitter = ablations["without_jitter"]
  lines += ["", "### Without jitter", "",
            f"Test-time K perturbed per frame by U(-{jitter['perturbation']:g}, "
            f"{jitter['perturbation']:g}) pixels of a 512 px frame (seed {jitter['seed']}); "
            f"landmark error of the true frames (the regressor's floor): "
            f"{fmt(jitter['true_frames_landmark_error'])} px.", "",
            "| renderer | K | PSNR | PSNR inpainted | landmark error (px) |", "|---|---|---|---|---|"]
  for r in jitter["rows"]:
    for condition in ("fitted", "perturbed"):
      s = r[condition]
      lines.append(f"| s = {r['jitter_s']:g} ({r['source']}) | {condition} | {fmt(s['psnr'])} | "
                   f"{fmt(s['psnr_inpainted'])} | {fmt(s.get('landmark_error', '-'))} |")
  geometry = ablations["geometry"]
  lines += ["", "### Geometric checks", "",
            "Landmark error: the regressor's landmarks on the written frames against the morphable "
            "model's landmarks projected with the pose each frame was rendered under (yaw, pitch, "
            f"roll offset {geometry['offset_degrees']} degrees).", "",
            "| frames | expression MSE | expression variance | landmark error (px) |",
            "|---|---|---|---|"]
  for name, s in geometry["summary"].items():
    lines.append(f"| {name} | {fmt(s.get('expression_mse', '-'))} | "
                 f"{fmt(s.get('expression_variance', '-'))} | {fmt(s['landmark_error'])} |")
  return lines


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


def _context_rows(source: str, context: dict[str, Any]) -> dict[str, Any]:
  """Supplementary Table 1's rows from `context_table`'s results."""
  label = (f"{context['identity']}, {_SPLIT_TEXT.get(context['split'], context['split'])}: "
           f"{context['clips']} clips / {context['frames']} frames; the same B and C; AVConf: "
           f"LSE-C of {context['lse_expert']}; LMD: {context['lmd']} (pixels, not the paper's dlib "
           "LMD)")
  measured = [reproduction.row(f"PIR, k = {r['k']}", {"k": r["k"], "LMD": r.get("lmd"),
                                                      "AVConf": r.get("lse_c")}, label, source)
              for r in context["rows"]]
  measured.append(reproduction.row("Ground truth (not in the paper)",
                                   {"AVConf": context["ground_truth"]["lse_c"]}, label, source))
  done = {r["k"] for r in context["rows"]}
  missing = [reproduction.unavailable(f"PIR, k = {k}", "not trained in this sweep")
             for k in (1, 10, 50, 100, 200) if k not in done]
  if not isinstance(context["rows"][0].get("lmd"), (int, float)):
    missing.append(reproduction.unavailable("LMD", str(context["rows"][0].get("lmd"))))
  return reproduction.table("supp_table_1", measured, missing)


def paper_rows(results_dir: str) -> list[dict[str, Any]]:
  """Our results in `results_dir` (pir_tables.json or tables.json, from
  `experiments.pir.tables`) as rows of PIR's tables (`System.reproduce`)."""
  found = reproduction.read_json(results_dir, "pir_tables.json", "tables.json")
  out = [reproduction.not_produced("table_1_testset1", _NO_REAL_DATA.format("Testset 1",
                                                                            "AD-NeRF")),
         reproduction.not_produced("table_1_testset2", _NO_REAL_DATA.format("Testset 2",
                                                                            "FACIAL")),
         reproduction.not_produced("table_3", "user study (15 volunteers): not run")]
  if found is not None and "context_length" in found[1]:
    out.append(_context_rows(found[0], found[1]["context_length"]))
  else:
    out.append(reproduction.not_produced(
        "supp_table_1", "the context-length sweep is not run: `python -m experiments.pir.tables "
                        "--parts=context --contexts=1:A1,10:A10,50:A50,100:A100 ...`"))
  if found is None or "splits" not in found[1]:
    missing = (f"no results in {results_dir}: run `python -m experiments.pir.tables "
               f"--out={results_dir}/tables.json`" if found is None else
               f"{found[0]} has no Tables 1/2 results (`--parts=tables`)")
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


# ------------------------------------------------------------------------------ supplementary Table 1

_CONTEXT_KEYS = ("lmd", "lse_c", "lse_d", "expression_mse", "expression_variance",
                 "expression_lmd")


def context_table(dataset: str, identity: str, contexts: Sequence[tuple[int, str]],
                  renderer_workdir: str, *, triplane_workdir: str = "", split: str = "test",
                  syncnet_workdir: str = "", sync_eval_workdir: str = "", weights_dir: str = "",
                  regressor_workdir: str = "", max_clips: int = 0, max_frames: int = 0,
                  batch_size: int = 16) -> dict[str, Any]:
  """Supplementary Table 1 (context length): LMD and AVConf (LSE-C of `sync_expert.lse_scorer`)
  of PIR with the component A of each of `contexts` ((k, a `pir_audio2exp` workdir trained with
  `data.window` = k), all with the same B and C, on the identity's `split` clips (as Table 1:
  each clip drives its own frames); A's expression error beside them, the true frames' AVConf
  once.

  Raises:
    ValueError: no contexts, a workdir whose A trained with another k, no clips in the split.
  """
  if not contexts:
    raise ValueError("context table: no (k, pir_audio2exp workdir) pairs given")
  model = inference.load(contexts[0][1], renderer_workdir, triplane_workdir or None)
  expert = sync_expert.lse_scorer(sync_eval_workdir=sync_eval_workdir, weights_dir=weights_dir,
                                  syncnet_workdir=syncnet_workdir)
  scorer, truth_scorer = scorers(expert, regressor_workdir)
  options = video_inference.Options(box="full", batch_size=batch_size)
  data = dataset_lib.Dataset(dataset)
  clips = data.identity_clips(split, identity)[:max_clips or None]
  rows, truth, frames = [], None, 0
  for k, workdir in contexts:
    model = inference.with_audio2exp(model, workdir)
    if model.context != int(k):
      raise ValueError(f"context table: {workdir} trained component A with k = {model.context} "
                       f"(data.window), listed as k = {k}")
    result = evaluate_split(model, data, clips, scorer, truth_scorer if truth is None else None,
                            options, max_frames)
    truth = truth or result["summary"]["ground_truth"]
    frames = result["frames"]
    pir = result["summary"]["pir"]
    rows.append({"k": int(k), "source": model.sources["pir_audio2exp"],
                 **{key: pir[key] for key in _CONTEXT_KEYS if key in pir}})
  return {"identity": identity, "split": split, "clips": len(clips), "frames": frames,
          "lse_expert": sync_expert.scorer_label(expert),
          "lmd": "face regressor " + regressor_workdir if regressor_workdir else LMD_UNAVAILABLE,
          "renderer": model.sources["pir_renderer"], "triplane": model.sources["pir_triplane"],
          "rows": rows, "ground_truth": {k: truth[k] for k in ("lse_c", "lse_d")}}


# ------------------------------------------------------------------------------ ablations


def psnr(frames: np.ndarray, truth: np.ndarray, masks: np.ndarray | None = None) -> float:
  """PSNR (8 bit) of frames [T, H, W, 3] over the whole frames or inside `masks` [T, H, W, 1]."""
  return psnr_inside(frames, truth, np.ones(frames.shape[:-1] + (1,), np.float32)
                     if masks is None else masks)


def landmark_error(landmarks: Any, frames: np.ndarray, truth: np.ndarray) -> float:
  """`metrics.landmarks.point_error` (pixels) of the 68 landmarks `landmarks` finds on uint8
  frames [T, H, H, 3] against the true landmarks [T, 68, 2] in their pixels."""
  return float(landmarks_lib.point_error(landmarks.predict(frames)["landmarks"], truth))


def projected_landmarks(alpha: np.ndarray, expression: np.ndarray, pose: np.ndarray,
                        K: np.ndarray) -> np.ndarray:  # pylint: disable=invalid-name
  """The morphable model's 68 landmarks [T, 2] of identity alpha [A], expressions [T, E] and
  poses [T, 6] projected by K [3, 3] (the pixels of K's frames): where a render of them
  belongs."""
  model = morphable.default_model()
  alpha = np.broadcast_to(np.asarray(alpha, np.float64), (pose.shape[0], model.num_identity))
  return np.asarray(morphable.landmarks_2d(model, alpha, np.asarray(expression, np.float64),
                                           np.asarray(pose, np.float64),
                                           np.asarray(K, np.float64)), np.float32)


def _frame_triplane(workdir: str) -> tuple[Any, Any, str]:
  """(stage, evaluation parameters, source) of a component B trained on the whole frame."""
  stage, state, step = restore.restore_stage(workdir, expected_stage=triplane_lib.STAGE)
  if stage.region != "frame":
    raise ValueError(f"without rendering: {workdir} trained B on the {stage.region!r} region; "
                     "the ablation needs one trained with --config.loss.region=frame")
  return stage, jax.device_get(state.eval_params), f"{workdir} step {step}"


def without_rendering(model: inference.PirModel, data: dataset_lib.Dataset,
                      clips: list[dataset_lib.Clip], frame_triplane_workdir: str,
                      options: video_inference.Options, max_frames: int = 0) -> dict[str, Any]:
  """"Without rendering" (paper Fig. 7) with numbers. B trained on the whole frame
  (`loss.region` = "frame") makes the output frame directly: its proxy upsampler's I_face of A's
  expressions under each frame's pose and K. Against the true frame resized to the networks'
  S: PSNR outside the head (the head mask at S) and over the whole frame, of that frame, of C's
  whole rendered frame and of the written frame (C inside the inpaint mask, the target's pixels
  outside)."""
  stage, params, source = _frame_triplane(frame_triplane_workdir)
  if stage.image_size != model.image_size:
    raise ValueError(f"without rendering: {frame_triplane_workdir} renders {stage.image_size} px, "
                     f"PIR's C {model.image_size} px")
  size = model.image_size
  face_fn = jax.jit(lambda p, batch: stage.forward(p, batch)[1])
  rows: dict[str, list[dict[str, float]]] = {n: [] for n in WITHOUT_RENDERING}
  for clip in clips:
    target, audio = clip_target(data, clip, max_frames)
    result = inference.run_arrays(model, target, audio, options, audio_id=clip.id)
    n = result.frames.shape[0]
    K = pipelines_base.rescale_intrinsics(target.K, size / target.frames.shape[1])  # pylint: disable=invalid-name
    make_batch = lambda index: (params, {
        "alpha": np.broadcast_to(target.alpha, (index.size,) + target.alpha.shape),
        "expression": result.expressions[index], "pose": result.pose[index],
        "K": np.broadcast_to(K, (index.size, 3, 3))})
    whole = video_inference.batched(face_fn, make_batch, n, options.batch_size)
    whole = np.clip(np.round(whole * 255.0), 0, 255).astype(np.uint8)
    truth = pipelines_base.resize_frames(np.asarray(target.frames[:n]), size)
    outside = 1.0 - np.stack([inference.head_mask(target, v, size) for v in range(n)])
    made = {"pir_written": pipelines_base.resize_frames(result.frames, size),
            "pir_rendered": result.rendered, "without_rendering": whole}
    for name, frames in made.items():
      rows[name].append({"psnr_outside_head": psnr_inside(frames, truth, outside),
                         "psnr": psnr(frames, truth)})
  return {"frame_triplane": source, "image_size": size,
          "summary": {name: _means(r) for name, r in rows.items()}}


WITHOUT_RENDERING = ("pir_written", "pir_rendered", "without_rendering")


def k_perturbation(seed: int, clip_index: int, num_frames: int, pixels: float) -> np.ndarray:
  """x1, x2, x3 [T, 3] ~ U(-pixels, pixels): the test-time perturbation of K (one draw per frame,
  the same for every renderer compared)."""
  rng = np.random.default_rng([seed, clip_index])
  return rng.uniform(-pixels, pixels, (num_frames, 3)).astype(np.float32)


def without_jitter(model: inference.PirModel, data: dataset_lib.Dataset,
                   clips: list[dataset_lib.Clip], renderer_workdirs: Sequence[str],
                   options: video_inference.Options, *, perturbation: float = JITTER_PIXELS,
                   seed: int = 0, landmarks: Any = None, max_frames: int = 0) -> dict[str, Any]:
  """"Without jitter" (paper Fig. 8) with numbers: PIR with each renderer of `renderer_workdirs`
  (trained against the same B with its `jitter.strength` s, e.g. the paper's s = 3 and s = 0)
  on `clips`, under K as fitted and under K perturbed per frame by x1, x2, x3 ~ U(-p, p), p =
  `perturbation` pixels of a 512 px frame scaled to the clip's (`k_perturbation`): PSNR of the
  written frames and inside the inpaint mask, and with `landmarks` (a face regressor) the
  landmark misalignment, `landmark_error` of the written frames against the clip's true
  landmarks (the true frames' own error beside it: the regressor's floor)."""
  rows, floor = [], []
  for workdir in renderer_workdirs:
    variant = inference.with_renderer(model, workdir)
    strength = float(variant.renderer.config.jitter.strength) * 512.0 / variant.image_size
    scores: dict[str, list[dict[str, float]]] = {"fitted": [], "perturbed": []}
    for index, clip in enumerate(clips):
      target, audio = clip_target(data, clip, max_frames)
      n = target.num_frames
      pixels = perturbation * target.frames.shape[1] / 512.0
      truth = np.asarray(target.frames)
      for condition, jitter in (("fitted", None),
                                ("perturbed", k_perturbation(seed, index, n, pixels))):
        result = inference.run_arrays(variant, target, audio, options, k_jitter=jitter,
                                      audio_id=clip.id)
        row = {"psnr": psnr(result.frames, truth),
               "psnr_inpainted": psnr_inside(result.frames, truth, result.inpaint_masks)}
        if landmarks is not None:
          row["landmark_error"] = landmark_error(landmarks, result.frames, target.landmarks)
        scores[condition].append(row)
      if landmarks is not None and not rows:
        floor.append(landmark_error(landmarks, truth, target.landmarks))
    rows.append({"jitter_s": strength, "source": variant.sources["pir_renderer"],
                 **{c: _means(r) for c, r in scores.items()}})
  return {"perturbation": perturbation, "seed": seed, "rows": rows,
          "true_frames_landmark_error": float(np.mean(floor)) if floor else LANDMARKS_UNAVAILABLE}


LANDMARKS_UNAVAILABLE = "unavailable: no face regressor (regressor_workdir) for the landmarks"


def pose_check(model: inference.PirModel, data: dataset_lib.Dataset,
               clips: list[dataset_lib.Clip], offset_degrees: Sequence[float],
               options: video_inference.Options, landmarks: Any = None,
               max_frames: int = 0) -> dict[str, Any]:
  """Geometric checks against the corpus's ground truth: A's expression error (`expression_error`)
  and, with `landmarks` (a face regressor), the landmark error of renders under the target's own
  pose and under it plus `offset_degrees` (yaw, pitch, roll): `landmark_error` of the written
  frames against `projected_landmarks` of the clip's identity, A's expressions and the pose each
  frame was rendered under; the true frames against the projection of their own parameters is
  the floor (the regressor's error and the corpus's projection)."""
  rows: dict[str, list[dict[str, float]]] = {"natural": [], "offset": [], "true_frames": []}
  for clip in clips:
    target, audio = clip_target(data, clip, max_frames)
    n = target.num_frames
    offset = np.broadcast_to(np.deg2rad(np.asarray(offset_degrees, np.float32)), (n, 3))
    for name, pose_offset in (("natural", None), ("offset", offset)):
      result = inference.run_arrays(model, target, audio, options, pose_offset=pose_offset,
                                    audio_id=clip.id)
      row = expression_error(result.expressions, target.expression)
      if landmarks is not None:
        row["landmark_error"] = landmark_error(
            landmarks, result.frames,
            projected_landmarks(target.alpha, result.expressions, result.pose, target.K))
      rows[name].append(row)
    if landmarks is not None:
      rows["true_frames"].append({"landmark_error": landmark_error(
          landmarks, np.asarray(target.frames),
          projected_landmarks(target.alpha, target.expression, target.pose, target.K))})
  return {"offset_degrees": [float(d) for d in offset_degrees],
          "summary": {name: _means(r) if r else {"landmark_error": LANDMARKS_UNAVAILABLE}
                      for name, r in rows.items()}}


def run_ablations(dataset: str, identity: str, audio2exp_workdir: str, renderer_workdir: str, *,
                  triplane_workdir: str = "", no_jitter_renderer_workdir: str = "",
                  frame_triplane_workdir: str = "", regressor_workdir: str = "",
                  pose_offset: Sequence[float] = (15.0, 0.0, 0.0),
                  perturbation: float = JITTER_PIXELS, seed: int = 0, split: str = "test",
                  max_clips: int = 0, max_frames: int = 0, batch_size: int = 16
                  ) -> dict[str, Any]:
  """The ablations with numbers and the geometric checks on the identity's `split` clips:
  "without_rendering" (with `frame_triplane_workdir`), "without_jitter" (the renderer and, with
  `no_jitter_renderer_workdir`, the one trained with s = 0) and "geometry" (`pose_check`);
  landmark errors need `regressor_workdir`."""
  model = inference.load(audio2exp_workdir, renderer_workdir, triplane_workdir or None)
  data = dataset_lib.Dataset(dataset)
  clips = data.identity_clips(split, identity)[:max_clips or None]
  options = video_inference.Options(box="full", batch_size=batch_size)
  landmarks = face_regressor.load_face_regressor(regressor_workdir) if regressor_workdir \
      else None
  out: dict[str, Any] = {"identity": identity, "split": split, "clips": len(clips),
                         "sources": model.sources,
                         "landmarks": ("face regressor " + regressor_workdir if regressor_workdir
                                       else LANDMARKS_UNAVAILABLE)}
  out["without_rendering"] = without_rendering(
      model, data, clips, frame_triplane_workdir, options, max_frames) \
      if frame_triplane_workdir else ("not run: give the workdir of a component B trained with "
                                      "--config.loss.region=frame")
  renderers = [renderer_workdir] + ([no_jitter_renderer_workdir]
                                    if no_jitter_renderer_workdir else [])
  out["without_jitter"] = without_jitter(model, data, clips, renderers, options,
                                         perturbation=perturbation, seed=seed,
                                         landmarks=landmarks, max_frames=max_frames)
  out["geometry"] = pose_check(model, data, clips, pose_offset, options, landmarks, max_frames)
  return out
