"""Talking-head systems, one package per paper, plus shared experts and plumbing.

Packages (each declares `SYSTEM`, see `api.py`): `ladtalk`, `dae_talker`, `radio`, `experts` (the
lip-sync expert and the face regressor every evaluation uses) and `frame_autoencoder` (the
trainer's reference stage). Shared plumbing, written once and used by every system: `api`
(declarations and discovery), `images` (value ranges), `video_inference` (audio windows, face
boxes, batching, paste-back, mp4), `main_part` (training a stage inside the main job, cached
results), `reproduction` (our results as rows of the paper tables, for `System.reproduce`). No system package imports another; shared code lives in these modules.
"""
