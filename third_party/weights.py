"""Registry of the public checkpoint files the library can load, and a lookup that fails loudly.

These files cannot be downloaded on the project's machines: users place them in a weights
folder (`--weights-dir`) under the file names below. A missing file raises
`MissingWeightsError` naming the file, what it is and where the public copy comes from; nothing
falls back to random weights.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib


@dataclasses.dataclass(frozen=True)
class WeightFile:
  """One public checkpoint.

  Attributes:
    filename: path relative to the weights folder.
    description: what the network is.
    source_url: where the public file comes from.
    used_by: the library code that loads it.
    alternatives: other accepted paths (relative to the weights folder), tried in order after
      `filename` (e.g. a hub repository's `pytorch_model.bin` beside `model.safetensors`).
  """
  filename: str
  description: str
  source_url: str
  used_by: str
  alternatives: tuple[str, ...] = ()


_TORCHVISION = "https://download.pytorch.org/models/"
_LPIPS_SOURCE = ("the `lpips` wheel on PyPI (lpips==0.1.4): unzip lpips-0.1.4-py3-none-any.whl "
                 "'lpips/weights/*' into the weights folder; also "
                 "https://github.com/richzhang/PerceptualSimilarity/tree/master/lpips/weights/v0.1")
_WAV2LIP_SOURCE = "the links in the Rudrabha/Wav2Lip README ('Getting the weights')"


def _hub_wav2vec2(repo: str, description: str) -> WeightFile:
  """A wav2vec2 repository of the Hugging Face Hub, laid out as downloaded into `<folder>/<repo>`."""
  return WeightFile(
      f"{repo}/model.safetensors", description,
      f"https://huggingface.co/{repo} (e.g. `huggingface-cli download {repo} model.safetensors "
      f"config.json --local-dir <weights folder>/{repo}`; pytorch_model.bin is read too)",
      "talking_heads.pretrained.wav2vec2 (wav2vec2 audio features)",
      alternatives=(f"{repo}/pytorch_model.bin",))

WEIGHTS: dict[str, WeightFile] = {
    "vgg16": WeightFile(
        "vgg16-397923af.pth", "torchvision VGG16 ImageNet weights (IMAGENET1K_V1)",
        _TORCHVISION + "vgg16-397923af.pth",
        "talking_heads.pretrained.vgg (LPIPS vgg backbone, VGG16 perceptual loss)"),
    "vgg19": WeightFile(
        "vgg19-dcbb9e9d.pth", "torchvision VGG19 ImageNet weights (IMAGENET1K_V1)",
        _TORCHVISION + "vgg19-dcbb9e9d.pth",
        "talking_heads.pretrained.vgg (VGG19 perceptual loss, RADIO / pix2pixHD taps)"),
    "alexnet": WeightFile(
        "alexnet-owt-7be5be79.pth", "torchvision AlexNet ImageNet weights (IMAGENET1K_V1)",
        _TORCHVISION + "alexnet-owt-7be5be79.pth",
        "talking_heads.pretrained.vgg (LPIPS alex backbone)"),
    "lpips_alex": WeightFile(
        "lpips/weights/v0.1/alex.pth", "LPIPS v0.1 linear layers for the AlexNet backbone",
        _LPIPS_SOURCE, "talking_heads.pretrained.lpips, talking_heads.metrics.lpips"),
    "lpips_vgg": WeightFile(
        "lpips/weights/v0.1/vgg.pth", "LPIPS v0.1 linear layers for the VGG16 backbone",
        _LPIPS_SOURCE, "talking_heads.pretrained.lpips, talking_heads.metrics.lpips"),
    "syncnet_v2": WeightFile(
        "syncnet_v2.model", "official SyncNet network S from syncnet_python (LSE-C/LSE-D)",
        "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
        "LSE evaluator (official SyncNet S)"),
    "pt_inception": WeightFile(
        "pt_inception-2015-12-05-6726825d.pth", "pytorch-fid InceptionV3 (TF FID Inception port)",
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth", "FID"),
    "wav2lip_lipsync_expert": WeightFile(
        "lipsync_expert.pth", "Wav2Lip's colour SyncNet lip-sync expert", _WAV2LIP_SOURCE,
        "Wav2Lip / LaDTalk sync loss"),
    "wav2lip": WeightFile(
        "wav2lip.pth", "Wav2Lip generator (trained without the GAN)", _WAV2LIP_SOURCE,
        "Wav2Lip generator"),
    "wav2lip_gan": WeightFile(
        "wav2lip_gan.pth", "Wav2Lip generator (trained with the visual-quality GAN)",
        _WAV2LIP_SOURCE, "Wav2Lip generator"),
    "wav2lip_visual_quality_disc": WeightFile(
        "visual_quality_disc.pth", "Wav2Lip visual-quality discriminator", _WAV2LIP_SOURCE,
        "Wav2Lip discriminator"),
    "facebook/wav2vec2-base": _hub_wav2vec2(
        "facebook/wav2vec2-base", "wav2vec 2.0 base, pre-trained on LibriSpeech 960 h"),
    "facebook/wav2vec2-base-960h": _hub_wav2vec2(
        "facebook/wav2vec2-base-960h", "wav2vec 2.0 base, CTC fine-tuned on LibriSpeech 960 h "
        "(FaceFormer's audio encoder)"),
    "facebook/wav2vec2-large-960h": _hub_wav2vec2(
        "facebook/wav2vec2-large-960h", "wav2vec 2.0 large, CTC fine-tuned on LibriSpeech 960 h"),
    "facebook/wav2vec2-large-960h-lv60-self": _hub_wav2vec2(
        "facebook/wav2vec2-large-960h-lv60-self", "wav2vec 2.0 large (LV-60k, self-training), "
        "CTC fine-tuned on LibriSpeech 960 h"),
    "facebook/wav2vec2-large-xlsr-53": _hub_wav2vec2(
        "facebook/wav2vec2-large-xlsr-53", "wav2vec 2.0 XLSR-53, pre-trained on 56k h of 53 "
        "languages (DAE-Talker, PIR, FD2Talk)"),
}


class MissingWeightsError(FileNotFoundError):
  """A public checkpoint the caller needs is not in the weights folder."""


def require(weights_dir: str | os.PathLike[str] | None, name: str) -> pathlib.Path:
  """Returns the path of registered checkpoint `name` inside `weights_dir`.

  Args:
    weights_dir: the folder holding public checkpoints, or None when none was given.
    name: a key of `WEIGHTS`.

  Raises:
    KeyError: `name` is not registered.
    MissingWeightsError: no folder was given or the file is not in it.
  """
  if name not in WEIGHTS:
    raise KeyError(f"unknown weight file {name!r}; registered: {sorted(WEIGHTS)}")
  entry = WEIGHTS[name]
  files = (entry.filename,) + entry.alternatives
  where = (f"{' or '.join(files)} ({entry.description}, used by {entry.used_by}); "
           f"get it from {entry.source_url}")
  if weights_dir is None:
    raise MissingWeightsError(f"no weights folder given (--weights-dir); needs {where}")
  for filename in files:
    path = pathlib.Path(weights_dir) / filename
    if path.is_file():
      return path
  raise MissingWeightsError(f"missing {pathlib.Path(weights_dir) / entry.filename}: {where}")
