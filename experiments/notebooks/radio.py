# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # RADIO: one-shot, reference-agnostic dubbing
#
# RADIO (`papers/`) dubs a face from ONE reference frame: the content encoder sees the target
# frame with its lower half masked, a style encoder turns the reference into a style code that,
# with the audio code, modulates a StyleGAN2 decoder, and ViT fidelity blocks attend to the
# reference's lower half for detail; a frozen sync discriminator judges the mouth against the
# speech while it trains. This notebook runs the system's part of the main job
# (`talking_heads.systems.radio`):
#
# 1. the synthetic corpus and the shared lip-sync expert (the experts' part),
# 2. RADIO's own many-identity corpus (`corpus_radio/`, the part's declared corpus), the sync
#    discriminator, the generator against it, a one-shot video of a held-out identity driven by a
#    held-out voice and Table 1 at small scale on the held-out identities (RADIO's part),
# 3. a held-out identity's clip dubbed from its own speech with its first frame as the only
#    reference, side by side with the ground truth: the reference, whole frames, the mouth region,
# 4. Table 1 and the paper's tables beside ours (`experiments.reproduce`).
#
# `VARIANT = "demo"` trains the main job's demo stages (about 80 minutes on a 2-core CPU, from
# the parts' declared estimates: experts 50, RADIO 30; the main job's demo generator trains only
# 80 steps, so it shows the pipeline, not RADIO's results); `"tiny"` runs in minutes and shows
# the pipeline (CI runs it so). Every part resumes from what `WORKDIR` holds: point it at a
# finished main job (`bash experiments/main.sh` writes `runs/main`, variant demo) to load its
# checkpoints and tables instead of training.

# %% tags=["parameters"]
VARIANT = "demo"             # "demo": the main job's demo stages; "tiny": minutes, a smoke run
WORKDIR = "runs/notebooks"   # the main job's layout; "runs/main" loads the main job's results
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
from talking_heads import compilation_cache

# Reruns (and later sessions on this machine) reuse compiled programs: ~/.cache/talking_heads/jax.
compilation_cache.enable()
print("jax", jax.__version__, "on", jax.default_backend(), jax.devices())

# %% [markdown]
# ## Train the stages (or load them)
# The corpus, then the experts' part and RADIO's part of the main job, exactly as
# `python -m experiments.main --systems=radio` runs them: RADIO's part declares its own corpus
# (many identities, some held out), which `part_context` builds (or finds) in
# `WORKDIR/corpus_radio/`; each part trains (or finds trained) its stages in
# `WORKDIR/<system>/`, and keeps videos and tables made from the same checkpoints.

# %%
from IPython.display import HTML, Image, Markdown, display

from experiments import main as main_job
from talking_heads.systems import api

corpus_root, _ = main_job.corpus_part(workdir, VARIANT, workers=2)
ctx = main_job.job_context(workdir, VARIANT, corpus_root)
for part, result in main_job.run_parts(ctx, ["radio"]):   # the experts' part first
  display(Markdown(f"### {part.title}\n\n" + result.markdown))
radio_system = api.get("radio")
# WORKDIR/corpus_radio, which the part built (found again, not rebuilt)
radio_corpus_root = main_job.part_context(ctx, radio_system, radio_system.main_part,
                                         workers=2).corpus_root
radio_video_pair = result.videos[0]        # the part's one-shot video and its voice's true clip

# %% [markdown]
# ## Dub a held-out identity from one reference frame
# The first clip of an identity no network saw (the `heldout_identity` split, as Table 1), with
# its own audio: its first frame is the only reference, and, as in dubbing, the generator sees
# each frame with the lower half masked; so the clip itself is the ground truth.

# %%
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import video as video_io
from talking_heads.systems import video_inference
from talking_heads.systems.radio import evaluation
from talking_heads.systems.radio import inference

corpus = dataset_lib.Dataset(radio_corpus_root)
clip = sorted(corpus.clips(evaluation.SPLIT), key=lambda c: c.id)[0]
model = inference.load_radio(os.path.join(workdir, "radio", "radio"))
options = video_inference.Options(box="full")   # corpus frames are the aligned faces
inputs = inference.prepare_arrays(clip.audio, clip.frames, model.image_size, options,
                                  audio_id=clip.id, video_id=clip.id)
generated = inference.run(model, inputs, options)
videos = pathlib.Path(workdir, "radio", "notebook")
videos.mkdir(parents=True, exist_ok=True)
paths = {
    "ground truth": video_io.write_video_with_audio(
        videos / f"truth_{clip.id}.mp4", clip.frames, clip.audio, fps=corpus.fps,
        sample_rate=corpus.sample_rate),
    "RADIO (one-shot)": video_inference.write_mp4(videos / f"radio_{clip.id}.mp4", generated)}
print(f"{clip.id} ({clip.split}, identity {clip.identity}): {clip.num_frames} frames at "
      f"{corpus.image_size} px; the generator works at {model.image_size} px ({model.source})")
display(HTML("<table><tr>" + "".join(f"<th>{name}</th>" for name in paths) + "</tr><tr>"
             + "".join(f"<td>{video_io.html_video(p, width=256)}</td>" for p in paths.values())
             + "</tr></table>"))

# %% [markdown]
# The part's own video: the same held-out identity (its first clip's first frame the reference)
# driven by a held-out voice's audio. No true video of that face saying those words exists; beside
# it, that audio's clip as the corpus rendered it (the same speech, another face).

# %%
print(radio_video_pair.title)
pair_paths = {"RADIO (one-shot, held-out voice)": radio_video_pair.generated,
              "the voice's clip": radio_video_pair.truth}   # relative to WORKDIR
display(HTML("<table><tr>" + "".join(f"<th>{name}</th>" for name in pair_paths) + "</tr><tr>"
             + "".join(f"<td>{video_io.html_video(os.path.join(workdir, p), width=256)}</td>"
                       for p in pair_paths.values())
             + "</tr></table>"))

# %% [markdown]
# ## The reference, then whole frames and the mouth region side by side
# The reference is the crop the generator saw (the clip's first frame at its face size). Rows:
# ground truth, RADIO; columns: frames spread over the clip. The mouth crops are cut around the
# ground truth's mouth landmarks (iBUG-68 points 48-67) in both rows.

# %%
import imageio.v3 as iio
import numpy as np

from talking_heads.face import crop
from talking_heads.face import morphable
from talking_heads.training import writers

reference = inference.reference_crop(inputs)
print(f"reference: the first frame of {clip.id}, {reference.shape[0]} px")
display(Image(data=iio.imwrite("<bytes>", reference, extension=".png"), width=128))

num_frames = min(clip.num_frames, generated.frames.shape[0])
shown = np.linspace(0, num_frames - 1, 6).astype(int)
rows = {"ground truth": np.asarray(clip.frames)[shown], "RADIO": generated.frames[shown]}
mouth_boxes = crop.landmark_boxes(clip.landmarks[shown][:, morphable.MOUTH_INDICES])
mouths = {name: crop.crop_faces(frames, mouth_boxes, 64, scale=1.5)
          for name, frames in rows.items()}


def show_grid(images_by_row: dict[str, np.ndarray]) -> None:
  print(" / ".join(images_by_row) + f" (frames {shown.tolist()})")
  grid = writers.image_grid(np.concatenate(list(images_by_row.values())), columns=len(shown))
  display(Image(data=iio.imwrite("<bytes>", grid, extension=".png")))


show_grid(rows)
show_grid(mouths)

# %% [markdown]
# ## Table 1 at small scale
# The part's Table 1 (`WORKDIR/radio/radio_tables.json`): every scored held-out-identity clip
# dubbed one-shot (its first frame the only reference), PSNR, MS-SSIM, LPIPS, LSE-C/D and LMD
# where their judges are available, and which expert scored sync.

# %%
import json

with open(os.path.join(workdir, "radio", "radio_tables.json")) as f:
  display(Markdown(evaluation.markdown(json.load(f))))

# %% [markdown]
# ## The paper's tables beside ours
# `experiments.reproduce` turns this run's results (`WORKDIR/radio`) into rows of every table of
# the paper (`experiments/paper_tables/radio.json`), labelled with scale, data and machine, and
# lists what cannot be reproduced here and why (Tables 2/3 need the ablation workdirs).

# %%
from experiments import reproduce

markdown, _ = reproduce.reproduce("radio", os.path.join(workdir, "radio"))
display(Markdown(markdown))
