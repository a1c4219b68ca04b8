# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # talking_heads quickstart
#
# From nothing to a generated talking-head video, on a CPU laptop, Colab (CPU, GPU or TPU) or
# a TPU VM, using the accelerator jax already has (the first cell never reinstalls jax):
#
# 1. install the library from its metadata (`pip install -e ".[data]"`) when it is missing,
# 2. build the tiny synthetic talking-face corpus (espeak-ng speech driving a morphable face),
# 3. train the lip-sync expert and Wav2Lip (LaDTalk's base model) for a few steps each, from
#    config objects (`talking_heads.training.loop.train_and_evaluate`: no flags),
# 4. generate a video for a clip whose voice the networks never heard, and play it here with
#    its sound, beside the ground truth,
# 5. score it: PSNR against the ground truth and LSE-C / LSE-D with the expert trained in 3.
#
# `VARIANT = "tiny"` runs in a few minutes on a CPU and shows the pipeline, not a good model;
# `"demo"` trains the README's demo settings (a 14-minute corpus and about 40 minutes of training
# on a 2-core CPU, from the README's measurements; not yet timed on an accelerator). Rerunning
# resumes: finished clips and checkpoints in `WORKDIR` are kept. On Colab, set `REPO_URL` to this
# repository's git URL: the notebook clones it (the configs and dataset tools live in the
# checkout, not in the package).

# %% tags=["parameters"]
VARIANT = "tiny"             # "tiny": minutes on a CPU; "demo": the README's demo settings
WORKDIR = "runs/notebooks"   # corpus, checkpoints and videos (relative to the checkout)
REPO_URL = ""                # git URL to clone when not run from a checkout (Colab)

# %%
import os
import pathlib
import subprocess
import sys

# The checkout this notebook runs in (or one cloned by an earlier run), else a fresh clone (Colab).
here = pathlib.Path.cwd()
root = next((p for p in (here, *here.parents, here / "talking_heads")
             if (p / "experiments" / "notebooks").is_dir()), None)
if root is None:
  if not REPO_URL:
    raise RuntimeError("Not inside a talking_heads checkout: set REPO_URL (the repository's git "
                       "URL) in the parameters cell, or open the notebook from a checkout.")
  subprocess.run(["git", "clone", "--depth=1", REPO_URL, "talking_heads"], check=True)
  root = pathlib.Path("talking_heads").resolve()
os.chdir(root)   # experiments/ (configs) and data/ (corpus tools) are used from the checkout
sys.path.insert(0, str(root))
from experiments.notebooks import environment

environment.install()   # pip install -e ".[data]" when a requirement is missing; keeps jax
workdir = os.path.abspath(WORKDIR)
print(f"talking_heads checkout: {root}; Python {sys.version.split()[0]}; workdir {workdir}")

# %%
import jax

print("jax", jax.__version__, "on", jax.default_backend())
print(jax.devices())

# %% [markdown]
# ## The tiny synthetic corpus
# Identities rendered from a morphable face whose mouth follows espeak-ng speech (visemes), in
# the dataset format the pipelines read: frames, 16 kHz audio, landmarks, face parameters and a
# manifest with the splits (`train`, `val`, `test`, `heldout_identity`, `heldout_voice`).

# %%
from data import synthetic
from talking_heads.io import dataset as dataset_lib

corpus_root = os.path.join(workdir, "corpus")
summary = synthetic.build_corpus(corpus_root, VARIANT, workers=1 if VARIANT == "tiny" else 2,
                                 verbose=False)
corpus = dataset_lib.Dataset(corpus_root)
print(f"{summary['clips']} clips, {summary['frames']} frames, "
      f"{summary['audio_seconds'] / 60:.1f} min of speech; splits {summary['splits']}")

# %% [markdown]
# ## Train the lip-sync expert, then Wav2Lip against it
# Each stage's config is an `ml_collections.ConfigDict` from `experiments/configs/`; change any
# field before training (e.g. `config.total_steps`). `train_and_evaluate` resumes from the
# workdir's newest checkpoint, so rerunning this cell continues where it stopped.

# %%
from experiments.configs.experts import syncnet as syncnet_config
from experiments.configs.ladtalk import wav2lip as wav2lip_config
from talking_heads.systems import main_part
from talking_heads.training import loop


def report(name: str, run_dir: str) -> None:
  """The run's last logged training loss and evaluation (from its metrics.jsonl)."""
  train, evaluation = main_part.read_metrics(run_dir)
  print(f"{name}: step {train['step']}, loss {train['loss']:.4f}; eval "
        + ", ".join(f"{k[5:]} {v:.4f}" for k, v in evaluation.items() if k.startswith("eval/")))


syncnet_workdir = os.path.join(workdir, "experts", "syncnet")
config = syncnet_config.get_config(VARIANT)
config.data.root = corpus_root
loop.train_and_evaluate(config, syncnet_workdir)
report("lip-sync expert", syncnet_workdir)

wav2lip_workdir = os.path.join(workdir, "ladtalk", "wav2lip")
config = wav2lip_config.get_config(VARIANT)
config.data.root = corpus_root
config.sync_expert.workdir = syncnet_workdir   # the frozen expert of Wav2Lip's sync loss
loop.train_and_evaluate(config, wav2lip_workdir)
report("Wav2Lip", wav2lip_workdir)

# %% [markdown]
# ## Generate a video for a held-out voice
# The clip's own frames are the identity video (Wav2Lip repaints the lower half of each face)
# and its audio, in a voice no network heard in training, drives the mouth. Corpus frames are
# face crops, so the face box is the whole frame (`box="full"`).

# %%
from talking_heads.systems import video_inference
from talking_heads.systems.ladtalk import inference

clip = corpus.clips("heldout_voice")[0]
model = inference.load_wav2lip(wav2lip_workdir)
options = video_inference.Options(box="full")
inputs = video_inference.prepare_arrays(clip.audio, clip.frames, model.image_size, options,
                                        audio_id=clip.id, video_id=clip.id)
generated = inference.run_wav2lip(model, inputs, options)
videos = pathlib.Path(workdir, "videos")
videos.mkdir(parents=True, exist_ok=True)
generated_path = video_inference.write_mp4(videos / f"wav2lip_{clip.id}.mp4", generated)
print(f"{clip.id} ({clip.identity}): {generated.frames.shape[0]} frames -> {generated_path}")

# %%
from IPython.display import HTML, display
from talking_heads.io import video as video_io

truth_path = video_io.write_video_with_audio(videos / f"truth_{clip.id}.mp4", clip.frames,
                                             clip.audio, fps=corpus.fps,
                                             sample_rate=corpus.sample_rate)
display(HTML(f"<table><tr><th>Wav2Lip ({VARIANT})</th><th>ground truth</th></tr><tr>"
             f"<td>{video_io.html_video(generated_path, width=256)}</td>"
             f"<td>{video_io.html_video(truth_path, width=256)}</td></tr></table>"))

# %% [markdown]
# ## Evaluate the video
# The mp4 is read back (what a user gets) and scored with `talking_heads.metrics`: PSNR against
# the ground-truth frames, and LSE-C (confidence, higher is better) / LSE-D (distance, lower is
# better) with the expert trained above. LSE from this expert is not comparable with the papers'
# numbers, which use the official SyncNet (`experiments.evaluate --weights-dir`).

# %%
from talking_heads.metrics import suite
from talking_heads.systems.experts import sync_expert

frames, _, audio = video_io.read_video_with_audio(generated_path, fps=corpus.fps,
                                                  sample_rate=corpus.sample_rate)
expert = sync_expert.lse_expert(syncnet_workdir)
scores = suite.VideoScorer(("psnr", "lse"), expert=expert).score(frames, clip.frames, audio,
                                                                  clip_id=clip.id)
truth = suite.video_lse(expert, clip.frames, clip.audio, clip_id=clip.id)
print(f"{'':14} {'PSNR (dB)':>10} {'LSE-C':>7} {'LSE-D':>7}")
print(f"{'Wav2Lip':14} {scores['psnr']:10.2f} {scores['lse_c']:7.3f} {scores['lse_d']:7.3f}")
print(f"{'ground truth':14} {'-':>10} {truth['lse_c']:7.3f} {truth['lse_d']:7.3f}")
