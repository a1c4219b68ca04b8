"""RADIO's Tables 1-3 at small scale and its reference robustness, on held-out identities.

One-shot (the paper's protocol: "first frame as the only identity reference for every method"):
every clip of split "heldout_identity" (identities no stage trained on) is dubbed with its own
audio and ONE reference frame, the clip's first; as in dubbing, the generator also sees each true
frame with its lower half masked. Corpus frames are the aligned faces (`box="full"`), pasted back
without feathering (`feather=0`), so the scores are of the generator's own pixels.

Dimension legend: T frames, H = W frame size, N audio samples (16 kHz), P = 68 landmarks.

Table 1 (`evaluate_systems`), per system and for the true frames (means over clips):
  psnr      8-bit PSNR of the whole frame (`metrics.suite`);
  ms_ssim   MS-SSIM (5 scales, 11 taps: frames of at least 161 px): smaller frames (96 px here)
            are upsampled bilinearly to `MS_SSIM_SIDE` = 161 px, output and truth alike;
  lpips     LPIPS (AlexNet) only with the public files in `weights_dir` (else "unavailable");
  lse_c/d   the expert `sync_expert.lse_scorer` picks (the independent one, or the colour
            expert, named in the results), on the frames as they are; the truth's own too;
  lmd       ATVGnet's LMD (sum over the 20 mouth points, pixels), landmarks of output and truth
            from the corpus-trained face regressor (`regressor_workdir`; else "unavailable").
  Systems: RADIO (`dubber`) and baselines given as declared inference entries
  (`entry_dubber`: e.g. `wav2lip` with a workdir trained on the same corpus; that entry's own
  protocol feeds it each true frame as its reference, which favours it on PSNR).
Tables 2 and 3 (`score_workdirs`): any list of (name, trained `radio` workdir), e.g. ablations
A-D and ViT(n, m), on the same clips: psnr, lpips (with weights) and sync, the mean in-sync
probability of ONE frozen `radio_sync` discriminator (`RadioSyncExpert.in_sync_probability`; the
paper's "Sync" is its own discriminator's audio-visual similarity).
Reference robustness (`reference_robustness`): the clips dubbed with references whose pose,
mouth opening or expression is controlled (rendered by the corpus renderer:
`experiments.radio.robustness`): psnr (lpips, lse) of the output against the true frames per
factor level, and the mouth-copy index: over every (clip, reference, frame), Pearson's r of the
output's mouth opening (`morphable.mouth_opening` of the landmarks a `LandmarkFn` finds on it)
with the reference's (`mouth_copy_index`: 1 for a generator that copies the reference's mouth,
about 0 for one that ignores it) beside r with the true frame's (`truth_following`, from the
corpus's landmarks).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
from absl import logging

from talking_heads.audio import windows
from talking_heads.face import morphable
from talking_heads.io import audio as audio_io
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import video as video_io
from talking_heads.metrics import agreement
from talking_heads.metrics import image as image_lib
from talking_heads.metrics import suite
from talking_heads.metrics import sync_experts
from talking_heads.pipelines import base as pipelines_base
from talking_heads.systems import api
from talking_heads.systems import reproduction
from talking_heads.systems import video_inference
from talking_heads.systems.experts import face_regressor
from talking_heads.systems.experts import sync_expert
from talking_heads.systems.radio import inference
from talking_heads.systems.radio import radio_sync

SPLIT = "heldout_identity"
MS_SSIM_SIDE = image_lib.min_ms_ssim_side()
MS_SSIM_RESIZE = (f"output and truth upsampled bilinearly to {MS_SSIM_SIDE} px (5-scale MS-SSIM "
                  "with 11 taps needs that side) when smaller")
LPIPS_UNAVAILABLE = "unavailable: no LPIPS weights (alexnet + lpips_alex in weights_dir)"
LMD_UNAVAILABLE = "unavailable: no face regressor (regressor_workdir) for the mouth landmarks"
EVAL_OPTIONS = dict(box="full", feather=0.0)   # corpus frames are the faces; no blending

# (true frames [T, H, W, 3], audio [N], reference [H, W, 3] or None (the clip's first frame),
#  clip id) -> output frames [T, H, W, 3] uint8.
Dubber = Callable[[np.ndarray, np.ndarray, "np.ndarray | None", str], np.ndarray]
LandmarkFn = Callable[[np.ndarray], np.ndarray]   # frames [T, H, W, 3] -> [T, P, 2]


class EvalClip(Protocol):
  """What the evaluation reads of a clip (`io.dataset.Clip` has it): id, identity, frames
  [T, H, W, 3] uint8, audio [N] and the corpus's landmarks [T, P, 2]."""
  id: str
  identity: str
  frames: np.ndarray
  audio: np.ndarray
  landmarks: np.ndarray


# ------------------------------------------------------------------------------ generators


def dubber(model: inference.RadioModel, batch_size: int = 16) -> Dubber:
  """RADIO as a `Dubber` (the inference entry's path on arrays)."""
  options = video_inference.Options(**EVAL_OPTIONS, batch_size=batch_size)

  def dub(frames: np.ndarray, audio: np.ndarray, reference: np.ndarray | None,
          clip_id: str) -> np.ndarray:
    inputs = inference.prepare_arrays(audio, np.asarray(frames), model.image_size, options,
                                      audio_id=clip_id, video_id=clip_id)
    step = inference.radio_step(model, inference.reference_crop(inputs, reference), batch_size)
    return video_inference.run(inputs, [("radio", step)], options).frames

  return dub


def entry_dubber(name: str, weights: Mapping[str, str], fps: int = 25) -> Dubber:
  """A declared inference entry (`api.generators()[name]`, e.g. "wav2lip") as a `Dubber`: the
  clip's frames (H.264, as any video it reads) and audio go through files, as with
  `experiments.generate`. It takes no controlled reference (ValueError when given one).

  Raises:
    KeyError: no such entry.
  """
  generator = api.generators()[name]
  loaded = generator.loader()(dict(weights), {k: d for k, (d, _) in generator.options.items()})
  options = video_inference.Options(**EVAL_OPTIONS, fps=fps)

  def dub(frames: np.ndarray, audio: np.ndarray, reference: np.ndarray | None,
          clip_id: str) -> np.ndarray:
    if reference is not None:
      raise ValueError(f"{name}: the inference entry takes no controlled reference ({clip_id})")
    with tempfile.TemporaryDirectory() as tmp:
      audio_path = os.path.join(tmp, f"{clip_id}.wav")
      audio_io.write_wav(audio_path, np.asarray(audio, np.float32), 16000)
      video_path = os.path.join(tmp, f"{clip_id}.mp4")
      video_io.write_video(video_path, np.asarray(frames), fps=fps)
      video = loaded.generate(audio_path, video_path, options)
      return np.concatenate(list(api.frame_chunks(video)))

  return dub


# ------------------------------------------------------------------------------ scoring


def ms_ssim(generated: np.ndarray, truth: np.ndarray) -> float:
  """Mean MS-SSIM of uint8 frames [T, H, W, 3] against the truth's, resized as `MS_SSIM_RESIZE`."""
  side = max(MS_SSIM_SIDE, generated.shape[1])
  resize = lambda x: pipelines_base.resize_frames(np.asarray(x), side)
  metric = suite.frame_metrics(["ms_ssim"])["ms_ssim"]
  return float(np.mean(metric(resize(generated), resize(truth))))


@dataclasses.dataclass
class Judges:
  """What scores the videos: the LSE expert, LPIPS variables and a landmark function (each
  optional; what is missing is reported as unavailable)."""
  expert: sync_experts.SyncExpert | None = None
  lpips_variables: Any = None
  landmarks: LandmarkFn | None = None

  def scorer(self, metrics: Sequence[str]) -> suite.VideoScorer:
    """A `VideoScorer` of the requested metrics this judge set can give."""
    have = {"lse": self.expert, "lpips": self.lpips_variables, "lmd": self.landmarks}
    metrics = [m for m in metrics if have.get(m, True) is not None]
    return suite.VideoScorer(metrics, expert=self.expert, landmarks=self.landmarks,
                             lpips_variables=self.lpips_variables)

  def unavailable(self) -> dict[str, str]:
    out = {}
    if self.lpips_variables is None:
      out["lpips"] = LPIPS_UNAVAILABLE
    if self.landmarks is None:
      out["lmd"] = LMD_UNAVAILABLE
    return out


def load_judges(*, weights_dir: str = "", sync_eval_workdir: str = "", syncnet_workdir: str = "",
                regressor_workdir: str = "", lse: bool = True) -> Judges:
  """The LSE expert (`sync_expert.lse_scorer`, when `lse`), LPIPS (AlexNet, only when
  `weights_dir` is given: a folder without its files raises MissingWeightsError naming them)
  and the face regressor's landmarks (when `regressor_workdir` is given)."""
  judges = Judges()
  if lse:
    judges.expert = sync_expert.lse_scorer(sync_eval_workdir=sync_eval_workdir,
                                           weights_dir=weights_dir,
                                           syncnet_workdir=syncnet_workdir)
  if weights_dir:
    from talking_heads.pretrained import lpips as lpips_convert  # pylint: disable=g-import-not-at-top
    judges.lpips_variables = lpips_convert.load_lpips(weights_dir, "alex")
  if regressor_workdir:
    regressor = face_regressor.load_face_regressor(regressor_workdir)
    judges.landmarks = lambda frames: regressor.predict(frames)["landmarks"]
  return judges


def _means(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and k != "frames"]
  return {k: float(np.mean([r[k] for r in rows])) for k in keys}


def heldout_clips(dataset: str, max_clips: int = 0, max_frames: int = 0) -> list[EvalClip]:
  """The clips of split "heldout_identity", every identity's first clip, then every identity's
  second, ... (so that a few clips cover many identities), at most `max_clips` (0: all), each cut
  to its first `max_frames` frames and their audio (0: whole).

  Raises:
    ValueError: the corpus has no such clips.
  """
  clips = sorted(dataset_lib.Dataset(dataset).clips(SPLIT), key=lambda c: c.id)
  if not clips:
    raise ValueError(f"dataset {dataset}: no {SPLIT} clips (RADIO is evaluated one-shot on "
                     "identities it never trained on)")
  rank: dict[str, int] = {}
  ranked = []
  for clip in clips:
    rank[clip.identity] = rank.get(clip.identity, -1) + 1
    ranked.append((rank[clip.identity], clip.identity, clip))
  clips = [c for _, _, c in sorted(ranked, key=lambda r: r[:2])][:max_clips or None]
  return [cut_clip(c, max_frames) for c in clips] if max_frames else clips


@dataclasses.dataclass(frozen=True)
class _Cut:
  id: str
  identity: str
  frames: np.ndarray
  audio: np.ndarray
  landmarks: np.ndarray


def cut_clip(clip: EvalClip, frames: int) -> EvalClip:
  """The clip's first `frames` frames with their audio (640 samples a frame) and landmarks."""
  samples = frames * windows.SAMPLE_RATE // windows.VIDEO_FPS
  return _Cut(clip.id, clip.identity, np.asarray(clip.frames[:frames]),
              np.asarray(clip.audio[:samples]), np.asarray(clip.landmarks[:frames]))


def evaluate_systems(clips: Sequence[EvalClip], systems: Mapping[str, Dubber],
                     judges: Judges) -> dict[str, Any]:
  """Table 1 (module docstring): per-clip and mean scores of each system and of the truth."""
  scorer = judges.scorer(("psnr", "lpips", "lse", "lmd"))
  truth_scorer = judges.scorer(("lse",))
  per_clip: dict[str, list[dict[str, Any]]] = {n: [] for n in (*systems, "ground_truth")}
  seconds = dict.fromkeys(systems, 0.0)
  for clip in clips:
    truth, audio = np.asarray(clip.frames), np.asarray(clip.audio, np.float32)
    for name, dub in systems.items():
      start = time.perf_counter()
      frames = dub(truth, audio, None, clip.id)
      seconds[name] += time.perf_counter() - start
      if frames.shape != truth.shape:
        raise ValueError(f"{name} made {frames.shape} for {clip.id}'s true {truth.shape}")
      per_clip[name].append({"clip": clip.id, "frames": int(truth.shape[0]),
                             **scorer.score(frames, truth, audio, clip_id=clip.id),
                             "ms_ssim": ms_ssim(frames, truth)})
    if truth_scorer.metrics:
      per_clip["ground_truth"].append({"clip": clip.id, "frames": int(truth.shape[0]),
                                       **truth_scorer.score(truth, audio=audio, clip_id=clip.id)})
    logging.info("%s: %s", clip.id, {n: rows[-1] for n, rows in per_clip.items() if rows})
  frames = sum(int(np.shape(c.frames)[0]) for c in clips)
  summary = {n: {**_means(rows), **judges.unavailable()} if n != "ground_truth" else _means(rows)
             for n, rows in per_clip.items() if rows}
  for name in systems:
    summary[name]["frames_per_second"] = frames / max(seconds[name], 1e-9)
  return {"clips": len(clips), "frames": frames, "summary": summary, "per_clip": per_clip}


def score_workdirs(entries: Sequence[tuple[str, str]], clips: Sequence[EvalClip],
                   sync: radio_sync.RadioSyncExpert, lpips_variables: Any = None,
                   batch_size: int = 16) -> dict[str, dict[str, Any]]:
  """Tables 2 and 3: each (name, trained `radio` workdir) dubs `clips` one-shot; its means of
  psnr, lpips (with weights, else "unavailable") and sync (`sync`'s in-sync probability)."""
  judges = Judges(lpips_variables=lpips_variables)
  scorer = judges.scorer(("psnr", "lpips"))
  out = {}
  for name, workdir in entries:
    model = inference.load_radio(workdir)
    dub = dubber(model, batch_size)
    rows = []
    for clip in clips:
      truth, audio = np.asarray(clip.frames), np.asarray(clip.audio, np.float32)
      frames = dub(truth, audio, None, clip.id)
      rows.append({**scorer.score(frames, truth, clip_id=clip.id),
                   "sync": sync.in_sync_probability(frames, audio, clip_id=clip.id)})
    out[name] = {**_means(rows), **{k: v for k, v in judges.unavailable().items()
                                    if k == "lpips"},
                 "workdir": workdir, "source": model.source}
    logging.info("%s: %s", name, out[name])
  return out


# ------------------------------------------------------------------------------ robustness


@dataclasses.dataclass(frozen=True)
class ControlledReference:
  """A reference frame of an identity with one factor set: `factor` ("yaw", "pitch",
  "mouth_opening" or an expression name) at `level`; `frame` uint8 [H, W, 3] (the clips' size)
  and its true mouth opening (`morphable.mouth_opening` of its landmarks)."""
  factor: str
  level: float
  frame: np.ndarray
  mouth_opening: float


def mouth_copy_index(output: Sequence[float], reference: Sequence[float],
                     truth: Sequence[float]) -> dict[str, float]:
  """Paired mouth openings of output frames, of their references and of the true frames ->
  {"mouth_copy_index": r(output, reference), "truth_following": r(output, truth), "pairs"}
  (Pearson's r; NaN where a side is constant)."""
  return {"mouth_copy_index": agreement.pearson(output, reference),
          "truth_following": agreement.pearson(output, truth), "pairs": len(output)}


def reference_robustness(dub: Dubber, clips: Sequence[EvalClip],
                         references: Mapping[str, Sequence[ControlledReference]],
                         judges: Judges) -> dict[str, Any]:
  """Every clip dubbed with every controlled reference of its identity (`references[identity]`):
  per factor and level the mean psnr (lpips, lse_c, lse_d with their judges) of the output
  against the true frames, and, with `judges.landmarks`, the mouth-copy index over all of them
  (module docstring).

  Raises:
    ValueError: a clip's identity has no references.
  """
  scorer = judges.scorer(("psnr", "lpips", "lse"))
  by_level: dict[tuple[str, float], list[dict[str, float]]] = {}
  openings: dict[str, list[np.ndarray]] = {"output": [], "reference": [], "truth": []}
  for clip in clips:
    if not references.get(clip.identity):
      raise ValueError(f"{clip.id}: no controlled references of identity {clip.identity!r}")
    truth, audio = np.asarray(clip.frames), np.asarray(clip.audio, np.float32)
    true_opening = np.asarray(morphable.mouth_opening(np.asarray(clip.landmarks)), np.float64)
    for ref in references[clip.identity]:
      frames = dub(truth, audio, ref.frame, clip.id)
      by_level.setdefault((ref.factor, float(ref.level)), []).append(
          scorer.score(frames, truth, audio, clip_id=clip.id))
      if judges.landmarks is not None:
        found = np.asarray(morphable.mouth_opening(judges.landmarks(frames)), np.float64)
        openings["output"].append(found)
        openings["reference"].append(np.full(found.shape, ref.mouth_opening))
        openings["truth"].append(true_opening[:found.shape[0]])
  factors: dict[str, list[dict[str, float]]] = {}
  for (factor, level), rows in sorted(by_level.items()):
    factors.setdefault(factor, []).append({"level": level, "clips": len(rows), **_means(rows)})
  out: dict[str, Any] = {"clips": len(clips), "factors": factors}
  if judges.landmarks is None:
    out["mouth_copy"] = "unavailable: no landmark function (regressor_workdir) for the outputs"
  else:
    out["mouth_copy"] = mouth_copy_index(*(np.concatenate(openings[k])
                                           for k in ("output", "reference", "truth")))
  return out


# ------------------------------------------------------------------------------ the command


def run(dataset: str, radio_workdir: str, *,
        baselines: Mapping[str, Mapping[str, str]] | None = None,
        ablations: Mapping[str, Sequence[tuple[str, str]]] | None = None,
        sync_workdir: str = "", syncnet_workdir: str = "", sync_eval_workdir: str = "",
        weights_dir: str = "", regressor_workdir: str = "", max_clips: int = 0,
        max_frames: int = 0, batch_size: int = 16) -> dict[str, Any]:
  """Table 1 (RADIO, the `baselines`: entry name -> its weights, and the truth) and, for each
  table id in `ablations` ("table_2", "table_3"), its (name, workdir) rows scored with the sync
  discriminator of `sync_workdir` (default: the one `radio_workdir` trained against). LSE:
  `sync_expert.lse_scorer` of the given experts, or without any, `own_sync_expert`. Returns the
  JSON-ready results (no command, machine or duration)."""
  baselines, ablations = baselines or {}, ablations or {}
  clips = heldout_clips(dataset, max_clips, max_frames)
  model = inference.load_radio(radio_workdir)
  independent = bool(weights_dir or sync_eval_workdir or syncnet_workdir)
  judges = load_judges(weights_dir=weights_dir, sync_eval_workdir=sync_eval_workdir,
                       syncnet_workdir=syncnet_workdir, regressor_workdir=regressor_workdir,
                       lse=independent)
  if not independent:
    judges.expert = own_sync_expert(sync_workdir or radio_sync_workdir(radio_workdir))
  systems = {"radio": dubber(model, batch_size)}
  systems.update({name: entry_dubber(name, weights) for name, weights in baselines.items()})
  results = {"dataset": dataset, "split": SPLIT,
             "identities": sorted({c.identity for c in clips}),
             "lse_expert": sync_expert.scorer_label(judges.expert),
             "ms_ssim": MS_SSIM_RESIZE,
             "lpips": LPIPS_UNAVAILABLE if judges.lpips_variables is None else "AlexNet LPIPS",
             "lmd": ("face regressor " + regressor_workdir) if regressor_workdir else
                    LMD_UNAVAILABLE,
             "sources": {"radio": model.source, **{n: dict(w) for n, w in baselines.items()}},
             "table_1": evaluate_systems(clips, systems, judges)}
  if any(ablations.values()):
    sync_workdir = sync_workdir or radio_sync_workdir(radio_workdir)
    sync = radio_sync.lse_expert(sync_workdir)
    results["sync_discriminator"] = sync.source
    for table_id, entries in ablations.items():
      if entries:
        results[table_id] = score_workdirs(entries, clips, sync, judges.lpips_variables,
                                           batch_size)
  return results


def own_sync_expert(sync_workdir: str) -> radio_sync.RadioSyncExpert:
  """RADIO's own sync discriminator as the LSE scorer, named as such: the fallback when no
  expert of `sync_expert.lse_scorer` is given (the generator trained against it)."""
  logging.warning("LSE: no syncnet / syncnet_eval workdir or syncnet_v2.model given; scoring with "
                  "RADIO's own sync discriminator (%s)", sync_workdir)
  expert = radio_sync.lse_expert(sync_workdir)
  expert.name += ("; used because no syncnet / syncnet_eval workdir or syncnet_v2.model was "
                  "given (RADIO trained against it: not independent)")
  return expert


def radio_sync_workdir(radio_workdir: str) -> str:
  """The sync discriminator workdir a trained `radio` workdir's config names."""
  from talking_heads.training import restore  # pylint: disable=g-import-not-at-top
  return restore.load_config(radio_workdir, expected_stage="radio").sync_discriminator.workdir


_TABLE_1 = {"PSNR": "psnr", "MS-SSIM": "ms_ssim", "LPIPS": "lpips", "LSE-C": "lse_c",
            "LSE-D": "lse_d", "LMD": "lmd", "frames/s": "frames_per_second"}
_ABLATION = {"PSNR": "psnr", "LPIPS": "lpips", "Sync": "sync"}


def _cell(value: Any) -> str:
  """A table cell: numbers as `suite.format_value`, an unavailable metric as "n/a" (the reason
  stands in the table's heading)."""
  if isinstance(value, str) and value.startswith("unavailable"):
    return "n/a"
  return suite.format_value(value)


def markdown(results: Mapping[str, Any]) -> str:
  """Tables 1-3 of `run`'s results."""
  t1 = results["table_1"]
  lines = ["# RADIO Tables 1-3 at small scale (held-out identities, one-shot)", "",
           f"Command: `{results.get('command', '-')}`  ",
           f"Machine: {results.get('machine', '-')}  ",
           f"Duration: {results.get('duration_s', '-')} s; {t1['clips']} {results['split']} "
           f"clips / {t1['frames']} frames of {', '.join(results['identities'])}; LSE expert: "
           f"{results['lse_expert']}; MS-SSIM: {results['ms_ssim']}; LPIPS: {results['lpips']}; "
           f"LMD: {results['lmd']}", "",
           "| system | " + " | ".join(_TABLE_1) + " |", "|---|" + "---|" * len(_TABLE_1)]
  for name, s in t1["summary"].items():
    lines.append(f"| {name} | " + " | ".join(_cell(s.get(k, "-")) for k in _TABLE_1.values())
                 + " |")
  for table_id in ("table_2", "table_3"):
    if table_id in results:
      lines += ["", f"{table_id} (sync: {results['sync_discriminator']}):", "",
                "| variant | " + " | ".join(_ABLATION) + " | workdir |",
                "|---|" + "---|" * (len(_ABLATION) + 1)]
      for name, s in results[table_id].items():
        lines.append(f"| {name} | " + " | ".join(_cell(s.get(k, "-")) for k in _ABLATION.values())
                     + f" | {s['source']} |")
  return "\n".join(lines) + "\n"


def robustness_markdown(results: Mapping[str, Any]) -> str:
  """The reference-robustness study's tables (`reference_robustness` results plus command,
  machine, duration, system)."""
  lines = ["# RADIO reference robustness (held-out identities, controlled references)", "",
           f"Command: `{results.get('command', '-')}`  ",
           f"Machine: {results.get('machine', '-')}  ",
           f"Duration: {results.get('duration_s', '-')} s; system {results.get('system', '-')}; "
           f"{results['clips']} clips; LSE expert: {results.get('lse_expert', '-')}", ""]
  columns = ("psnr", "lpips", "lse_c", "lse_d")
  for factor, levels in results["factors"].items():
    lines += [f"| {factor} | clips | " + " | ".join(columns) + " |",
              "|---|---|" + "---|" * len(columns)]
    lines += [f"| {r['level']:g} | {r['clips']} | "
              + " | ".join(_cell(r.get(c, "-")) for c in columns) + " |"
              for r in levels]
    lines.append("")
  copy = results["mouth_copy"]
  if isinstance(copy, str):
    lines.append(f"Mouth-copy index: {copy}")
  else:
    lines.append(f"Mouth-copy index (r of the output's mouth opening with the reference's): "
                 f"{suite.format_value(copy['mouth_copy_index'])}; with the true frame's: "
                 f"{suite.format_value(copy['truth_following'])} ({copy['pairs']} frames)")
  return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ paper tables

_NOT_REIMPLEMENTED = "method not reimplemented in talking_heads"
_PAPER_NAMES = {"radio": "RADIO (Ours)", "ground_truth": "GT", "wav2lip": "Wav2Lip",
                "ladtalk": "LaDTalk (not in the paper)"}
_ABLATION_NAMES = {"A": "A: Baseline", "B": "B: + Style modulation",
                   "C": "C: + Fidelity mapping w/o ViT", "D": "D: + Fidelity mapping w/ ViT",
                   "ViT(1,1)": "+ ViT(1, 1)", "ViT(1,2)": "+ ViT(1, 2)",
                   "ViT(2,2)": "+ ViT(2, 2) (RADIO)"}


def _label(results_dir: str, results: Mapping[str, Any], table_1: bool = True) -> str:
  """What produced the rows; Table 1's names its RADIO workdir's size and steps (the ablation
  rows name each workdir and step themselves)."""
  t1 = results["table_1"]
  radio = ""
  if table_1:
    config = reproduction.stage_config(results_dir, "radio",
                                       results["sources"]["radio"].rpartition(" step ")[0])
    size = (f"{config['variant']} {config['data']['image_size']} px, {config['steps']} steps"
            if config else "no config found")
    radio = f"RADIO {size}; "
  return (f"synthetic corpus {results['dataset']}, {t1['clips']} held-out-identity clips / "
          f"{t1['frames']} frames (one-shot: first frame as the reference); {radio}"
          f"{results.get('machine', '-')}; LSE: {results['lse_expert']}; MS-SSIM: "
          f"{results['ms_ssim']}")


def paper_rows(results_dir: str) -> list[dict[str, Any]]:
  """Our results in `results_dir` (radio_tables.json from the main job or tables.json from
  `experiments.radio.tables`) as rows of RADIO's tables (`System.reproduce`)."""
  found = reproduction.read_json(results_dir, "radio_tables.json", "tables.json")
  voxceleb = reproduction.not_produced(
      "table_1_voxceleb2", "one test set here (the synthetic corpus's held-out identities): its "
                           "rows are under table_1_hdtf; no real dataset on this machine")
  if found is None:
    reason = (f"no results in {results_dir}: run `python -m experiments.main` or `python -m "
              f"experiments.radio.tables --out={results_dir}/tables.json`")
    return [voxceleb] + [reproduction.not_produced(t, reason)
                         for t in ("table_1_hdtf", "table_2", "table_3")]
  source, results = found
  label = _label(results_dir, results)
  summary = results["table_1"]["summary"]
  columns = {"PSNR": "psnr", "MS-SSIM": "ms_ssim", "LPIPS": "lpips", "Sync-C": "lse_c",
             "Sync-D": "lse_d", "LMD": "lmd"}
  rows = [reproduction.row(_PAPER_NAMES.get(n, n), {c: s.get(k) for c, k in columns.items()},
                           label, source) for n, s in summary.items()]
  missing = [reproduction.unavailable(m, _NOT_REIMPLEMENTED)
             for m in ("ATVGNet", "MakeItTalk", "PC-AVS", "DINet", "IP-LAP")]
  if "wav2lip" not in summary:
    missing.append(reproduction.unavailable("Wav2Lip", "not run: no Wav2Lip workdir trained on "
                                                       "this corpus was given"))
  radio = summary.get("radio", {})
  for column in ("LPIPS", "LMD"):
    if not isinstance(radio.get(columns[column]), (int, float)):
      missing.append(reproduction.unavailable(
          column, str(radio.get(columns[column], "not measured")).removeprefix("unavailable: ")))
  out = [voxceleb, reproduction.table("table_1_hdtf", rows, missing)]
  for table_id in ("table_2", "table_3"):
    if table_id not in results:
      out.append(reproduction.not_produced(
          table_id, f"no ablation workdirs were scored into {source} (train them with "
                    "--config.model.ablation=A..D / the config argument "
                    "radio.py:demo,model.vit=(n,m), then `python -m experiments.radio.tables "
                    "--table_2=A=<workdir> ...`)"))
      continue
    ablation_label = (f"{_label(results_dir, results, table_1=False)}; "
                      f"Sync: {results['sync_discriminator']}")
    measured = [reproduction.row(_ABLATION_NAMES.get(n, n),
                                 {c: s.get(k) for c, k in _ABLATION.items()},
                                 f"{ablation_label}; {s['source']}", source)
                for n, s in results[table_id].items()]
    lpips_missing = [reproduction.unavailable("LPIPS", LPIPS_UNAVAILABLE.removeprefix(
        "unavailable: "))] if any(isinstance(s.get("lpips"), str)
                                   for s in results[table_id].values()) else []
    out.append(reproduction.table(table_id, measured, lpips_missing))
  return out
