r"""DAE-Talker's audio front ends side by side: the RADIO mel vs a wav2vec2 encoder.

  python -m experiments.dae_talker.frontend_comparison --dataset=/tmp/demo_corpus \
      --identity=id01 --dae_workdir=runs/dae_demo --mel_workdir=runs/speech2latent_demo \
      --wav2vec2_workdir=runs/speech2latent_wav2vec2_demo --encoder=runs/wav2vec2_demo \
      --syncnet_workdir=runs/syncnet_demo --regressor_workdir=runs/face_regressor_demo \
      --out=experiments/results/dae_talker_demo/frontend_comparison.json

Three measurements, each with both front ends (the two speech2latent workdirs differ only in
`audio.frontend`; the autoencoder, its latents and the evaluation are shared):
1. Phoneme probe (`talking_heads.analysis.phoneme_probe`): a linear probe of the phoneme at each
   video frame, fitted on the corpus's train split (every identity) and scored on its test split
   and on the held-out voices, from the features speech2latent reads per video frame: the RADIO
   mel (4 frames of 80 bins) and the encoder's hidden states in pairs of 50 Hz frames (every
   layer), beside the same architecture with random weights (what pretraining adds).
2. Latent error: speech2latent's predicted latents (with its predicted pose, as at inference) on
   every test and held-out-voice clip of the identity, against the true frames' DAE latents: MSE
   in DAE units and relative to predicting the training mean (1 - R^2).
3. Lip sync of the rendered videos: Table 1 of `systems.dae_talker.evaluation` (LSE-C/D with
   the corpus expert, LMD with the face regressor) on `clips` clips of `frames` frames per set,
   DDIM with `sample_steps` from one shared x_T, beside the true video and the true frames' own
   DAE latents decoded (the autoencoder's share of the lip error; the rest is speech2latent's).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np
from absl import app, flags, logging

from talking_heads.analysis import phoneme_probe
from talking_heads.audio import mel as mel_lib
from talking_heads.audio import wav2vec2
from talking_heads.audio import wav2vec2_features
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import reports
from talking_heads.pipelines import base as pipelines_base
from talking_heads.pretrained import wav2vec2 as wav2vec2_pretrained
from talking_heads.systems.dae_talker import evaluation
from talking_heads.systems.dae_talker import inference
from talking_heads.systems.experts import face_regressor
from talking_heads.systems.experts import sync_expert

FLAGS = flags.FLAGS
PROBE_TEST_SPLITS = ("test", "heldout_voice")
MEL_FRAMES_PER_VIDEO_FRAME = 4     # the RADIO mel's 100 Hz hop at 25 fps
PARTS = ("probe", "latents", "lip_sync")
TRUE_LATENTS_ROW = "true frames' DAE latents decoded (an exact speech2latent)"


def mel_frame_features(audio: np.ndarray, num_frames: int) -> np.ndarray:
  """[T, 4 * 80]: the RADIO mel frames of each video frame, side by side (speech2latent's view)."""
  mel = mel_lib.mel_spectrogram_time_major(audio, mel_lib.RADIO_MEL)              # [F, 80]
  need = MEL_FRAMES_PER_VIDEO_FRAME * num_frames
  mel = np.pad(mel, ((0, max(0, need - len(mel))), (0, 0)), mode="edge")[:need]
  return mel.reshape(num_frames, -1)


def _probe_clips(dataset: dataset_lib.Dataset) -> dict[str, list[dataset_lib.Clip]]:
  clips = {split: list(dataset.clips(split)) for split in ("train",) + PROBE_TEST_SPLITS}
  for split, chosen in clips.items():
    missing = [c.id for c in chosen if not c.record.phonemes]
    if missing:
      raise ValueError(f"dataset {dataset.root}: clips {missing[:3]} of split {split!r} have no "
                       "phoneme timings (corpora built before they were recorded: rebuild it)")
  return clips


def phoneme_probes(dataset_root: str, config: wav2vec2.Wav2Vec2Config, variables: Any,
                   source: str, layers: tuple[int, ...] | None = None, min_count: int = 20,
                   seed: int = 0) -> dict[str, Any]:
  """{features: {split: ProbeResult as dict, "dim": D}} for the mel, the encoder's hidden states
  `layers` (default every one, 0..L) and its last layer with random weights; phonemes with
  fewer than `min_count` training frames are not probed."""
  dataset = dataset_lib.Dataset(dataset_root)
  clips = _probe_clips(dataset)
  layers = tuple(range(config.num_hidden_layers + 1)) if layers is None else layers
  random_variables = wav2vec2.Wav2Vec2Model(config).init(
      jax.random.key(seed), np.zeros((1, config.receptive_field * 4), np.float32))
  extractors = {f"wav2vec2 layer {layer}": wav2vec2_features.FeatureExtractor(
      config, variables, source, layer=layer) for layer in layers}
  extractors["wav2vec2 random weights, last layer"] = wav2vec2_features.FeatureExtractor(
      config, random_variables, "random init", layer=-1)
  featurizers = {"mel (RADIO, 4 x 80 per frame)": mel_frame_features}
  featurizers.update({name: (lambda a, t, e=e: e.video_features(a, t, "pair"))
                      for name, e in extractors.items()})
  labels = {split: [phoneme_probe.frame_labels(c.record.phonemes, c.num_frames, dataset.fps)
                    for c in chosen] for split, chosen in clips.items()}
  # Each clip's audio read once for all featurizers.
  audio = {split: [(np.asarray(c.audio, np.float32), c.num_frames) for c in chosen]
           for split, chosen in clips.items()}
  results = {}
  for name, featurize in featurizers.items():
    start = time.perf_counter()
    features = {split: [featurize(a, t) for a, t in pairs] for split, pairs in audio.items()}
    train_x = np.concatenate(features["train"])
    train_y = sum(labels["train"], [])
    results[name] = {split: dataclasses.asdict(phoneme_probe.fit_linear_probe(
        train_x, train_y, np.concatenate(features[split]), sum(labels[split], []),
        min_count=min_count, seed=seed)) for split in PROBE_TEST_SPLITS}
    results[name]["dim"] = int(train_x.shape[1])
    logging.info("probe %s (%.0f s): %s", name, time.perf_counter() - start, results[name])
  return {"encoder": source, "probes": results}


def latent_errors(dataset_root: str, identity: str, latents_name: str,
                  model: inference.DAETalkerModel) -> dict[str, Any]:
  """{split: MSE in DAE units, and standardised per dimension by the training latents' std (the
  loss's units), each beside predicting the training mean} on the identity's clips."""
  dataset = dataset_lib.Dataset(dataset_root)
  predictor = model.speech2latent
  mean = predictor.latent_mean.reshape(1, -1)
  std = predictor.latent_std.reshape(1, -1)
  out = {}
  for split in evaluation.SETS:
    squared, baseline, standardised, standardised_baseline, frames = 0.0, 0.0, 0.0, 0.0, 0
    for clip in (c for c in dataset.clips(split) if c.identity == identity):
      true = np.load(pipelines_base.latents_path(dataset_root, latents_name, clip.id))
      predicted = predictor.predict_from_audio(np.asarray(clip.audio, np.float32))["latents"]
      n = min(len(true), len(predicted))
      true, error = true[:n].reshape(n, -1), predicted[:n].reshape(n, -1) - true[:n].reshape(n, -1)
      squared += float(np.sum(error ** 2))
      baseline += float(np.sum((mean - true) ** 2))
      standardised += float(np.sum((error / std) ** 2))
      standardised_baseline += float(np.sum(((mean - true) / std) ** 2))
      frames += n * true.shape[1]
    if not frames:
      raise ValueError(f"dataset {dataset_root}: no {split!r} clips of identity {identity!r}")
    out[split] = {"latent_mse": squared / frames, "mean_latent_mse": baseline / frames,
                  "unexplained_fraction": squared / baseline,
                  "standardised_mse": standardised / frames,
                  "standardised_mean_mse": standardised_baseline / frames}
  return out


def run(dataset: str, identity: str, dae_workdir: str, workdirs: dict[str, str], encoder: str,
        syncnet_workdir: str, regressor_workdir: str, *, parts: tuple[str, ...] = PARTS,
        clips: int = 2, frames: int = 50, sample_steps: int = 25, seed: int = 0,
        sync_eval_workdir: str = "", weights_dir: str = "") -> dict[str, Any]:
  """The measurements `parts` for `workdirs` ({front end: speech2latent workdir}); LSE scored
  as `sync_expert.lse_scorers` picks (official S, independent expert, else the colour one)."""
  if unknown := set(parts) - set(PARTS):
    raise ValueError(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
  results: dict[str, Any] = {"identity": identity, "workdirs": workdirs, "clips_per_set": clips,
                             "frames_per_clip": frames, "sample_steps": sample_steps}
  if "probe" in parts:
    start = time.perf_counter()
    results["phoneme_probe"] = phoneme_probes(
        dataset, *wav2vec2_pretrained.load_encoder(encoder), seed=seed)
    results["probe_seconds"] = round(time.perf_counter() - start, 1)
  if not {"latents", "lip_sync"} & set(parts):
    return results
  models = {name: inference.load(dae_workdir, w) for name, w in workdirs.items()}
  if "latents" in parts:
    results["latents"] = {
        name: latent_errors(dataset, identity, m.speech2latent.stage.config.data.latents, m)
        for name, m in models.items()}
  if "lip_sync" not in parts:
    return results
  expert, second = sync_expert.lse_scorers(sync_eval_workdir=sync_eval_workdir,
                                           weights_dir=weights_dir, syncnet_workdir=syncnet_workdir)
  results["lse_expert"] = sync_expert.scorer_label(expert)
  scorer = evaluation.Scorer(expert, face_regressor.load_face_regressor(regressor_workdir), second)
  options = inference.Options(sample_steps=sample_steps, seed=seed)
  size = next(iter(models.values())).image_size
  sets = {s: evaluation.load_clips(dataset, identity, s, clips, frames, size)
          for s in evaluation.SETS}
  reference = evaluation.reference_frame(dataset, identity)
  lip_sync: dict[str, dict[str, Any]] = {s: {} for s in sets}
  # The true frames' own latents decoded: the autoencoder's share of the lip error.
  runs = [(f"DAE-Talker ({name})", model, "DAE-Talker") for name, model in models.items()]
  runs.append((TRUE_LATENTS_ROW, next(iter(models.values())), "true frames' DAE latents"))
  for label, model, row in runs:
    start = time.perf_counter()
    table = evaluation.lip_sync_tables(model, None, sets, scorer, options, reference, rows=(row,))
    for s, rows in table["rows"].items():
      lip_sync[s]["Ground truth"] = rows["Ground truth"]
      lip_sync[s][label] = rows[row]
    results.setdefault("lip_sync_seconds", {})[label] = round(time.perf_counter() - start, 1)
  results["lip_sync"] = lip_sync
  return results


def markdown(results: dict[str, Any]) -> str:
  lines = []
  if "phoneme_probe" in results:
    lines += _probe_markdown(results["phoneme_probe"]) + [""]
  if "latents" in results:
    lines += _latents_markdown(results["latents"]) + [""]
  if "lip_sync" in results:
    lines += _lip_sync_markdown(results)
  return "\n".join(lines).rstrip() + "\n"


def _probe_markdown(probe: dict[str, Any]) -> list[str]:
  probes = probe["probes"]
  lines = [f"Phoneme probe (linear, frames labelled by espeak-ng's timings; encoder "
           f"{probe['encoder']}): held-out accuracy / balanced accuracy (%)", "",
           "| features | dim | test | held-out voices | majority class (test) |",
           "|---|---|---|---|---|"]
  for name, r in probes.items():
    cells = [f"{100 * r[s]['accuracy']:.1f} / {100 * r[s]['balanced_accuracy']:.1f}"
             for s in PROBE_TEST_SPLITS]
    lines.append(f"| {name} | {r['dim']} | {' | '.join(cells)} | "
                 f"{100 * r['test']['majority_rate']:.1f} |")
  return lines


def _latents_markdown(latents: dict[str, Any]) -> list[str]:
  lines = ["speech2latent's latent error on every clip of the identity (predicted pose, as at "
            "inference): MSE in DAE units (relative to predicting the training mean, 1 - R^2) and "
            "standardised per dimension (the loss's units; the mean predictor's beside it)", "",
            "| front end | test: MSE (1 - R^2) | test: standardised (mean's) | held-out voices: "
            "MSE (1 - R^2) | held-out voices: standardised (mean's) |", "|---|---|---|---|---|"]
  for name, r in latents.items():
    cells = []
    for s in evaluation.SETS:
      cells.append(f"{r[s]['latent_mse']:.3g} ({r[s]['unexplained_fraction']:.3f})")
      if "standardised_mse" in r[s]:
        cells.append(f"{r[s]['standardised_mse']:.3f} ({r[s]['standardised_mean_mse']:.3f})")
      else:
        cells.append("-")
    lines.append(f"| {name} | {' | '.join(cells)} |")
  return lines


def _lip_sync_markdown(results: dict[str, Any]) -> list[str]:
  lines = [f"Lip sync of the rendered videos ({results['clips_per_set']} clips x "
            f"{results['frames_per_clip']} frames per set, {results['sample_steps']} DDIM steps, "
            f"one shared x_T; LSE by {results.get('lse_expert', 'the corpus expert')}, LMD in "
            "pixels at the autoencoder's size)",
            "", "| set | video | LSE-C | LSE-D | LMD |", "|---|---|---|---|---|"]
  for s, rows in results["lip_sync"].items():
    for name, r in rows.items():
      lines.append(f"| {s} | {name} | {r['lse_c']:.3f} | {r['lse_d']:.3f} | {r['lmd']:.2f} |")
  return lines


def define_flags() -> None:
  """The command's flags (only when run as a program: the module is also imported)."""
  flags.DEFINE_string("dataset", None, "Corpus root (built with phoneme timings).")
  flags.DEFINE_string("identity", "id01", "The identity the autoencoder was trained on.")
  flags.DEFINE_string("dae_workdir", None, "Trained diffusion autoencoder.")
  flags.DEFINE_string("mel_workdir", None, "speech2latent with audio.frontend=mel.")
  flags.DEFINE_string("wav2vec2_workdir", None, "speech2latent with audio.frontend=wav2vec2.")
  flags.DEFINE_string("encoder", None, "The wav2vec2 encoder (pretraining workdir or folder).")
  flags.DEFINE_string("syncnet_workdir", None, "The colour SyncNet expert (LSE when no "
                      "independent one is given).")
  flags.DEFINE_string("sync_eval_workdir", "", "The independent expert (`syncnet_eval`) for LSE.")
  flags.DEFINE_string("weights_dir", "", "Folder with syncnet_v2.model (the official LSE).")
  flags.DEFINE_string("regressor_workdir", None, "Trained face regressor (landmarks).")
  flags.DEFINE_list("parts", list(PARTS), "Measurements to make.")
  flags.DEFINE_integer("clips", 2, "Clips per test set for lip sync.")
  flags.DEFINE_integer("frames", 50, "Frames per clip for lip sync.")
  flags.DEFINE_integer("sample_steps", 25, "DDIM steps.")
  flags.DEFINE_integer("seed", 0, "Seed of x_T and of the probes.")
  flags.DEFINE_string("out", None, "Output JSON (a markdown table is written beside it).")


def main(argv):
  del argv
  start = time.time()
  results = run(FLAGS.dataset, FLAGS.identity, FLAGS.dae_workdir,
                {"mel": FLAGS.mel_workdir, "wav2vec2": FLAGS.wav2vec2_workdir}, FLAGS.encoder,
                FLAGS.syncnet_workdir, FLAGS.regressor_workdir, parts=tuple(FLAGS.parts),
                clips=FLAGS.clips, frames=FLAGS.frames, sample_steps=FLAGS.sample_steps,
                seed=FLAGS.seed, sync_eval_workdir=FLAGS.sync_eval_workdir,
                weights_dir=FLAGS.weights_dir)
  results.update(command=reports.command_line(), machine=reports.machine_description(),
                 duration_s=round(time.time() - start, 1))
  reports.write_results(FLAGS.out, results, markdown(results))
  print(markdown(results))


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["dataset", "dae_workdir", "mel_workdir", "wav2vec2_workdir",
                                "encoder", "syncnet_workdir", "regressor_workdir", "out"])
  app.run(main)
