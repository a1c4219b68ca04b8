"""wav2vec 2.0 self-supervised pretraining of a speech front end on a dataset's audio.

Launch:
  python -m experiments.train --config=experiments/configs/wav2vec2_pretrain.py:demo \
      --config.data.root=/tmp/demo_corpus --workdir=runs/wav2vec2_demo
then write its features for the pipelines:
  python -m experiments.precompute_audio_features --dataset=/tmp/demo_corpus \
      --frontend=wav2vec2 --weights=runs/wav2vec2_demo --alignment=pair
Variants:
  tiny   tests: the tiny encoder (`audio.wav2vec2.CONFIGS["tiny"]`: width 32, 2 layers, 32 conv
         channels), G = 2 groups of V = 8 codes, K = 10 distractors, 16-32 frame windows
         (0.64-1.28 s), dropout 0, alpha 0.3, Gumbel temperature 0.5 -> 0.1 by 0.98, Adam 2e-3.
  demo   the demo corpus's speech, every identity: width 128, 4 layers, 4 heads, 128 conv channels,
         positional conv kernel 32 in 8 groups, G = 2, V = 32, K = 20, alpha 0.5 (0.1 collapsed
         the codebooks, see below), 1-4 s windows, batch 8, Adam 5e-4 (warm-up, cosine), 800
         steps (about 2.5 s a step on 2 shared CPU cores); Gumbel temperature 2 -> 0.5 by 0.999
         per update; no LayerDrop, the feature encoder's full gradient.
  paper  wav2vec 2.0 BASE (Baevski et al. 2020, §4.2 and fairseq's base config): the base encoder,
         mask p = 0.065 with spans of M = 10 (min 2 spans), G = 2, V = 320, codevectors 256,
         final projection 256, K = 100, kappa 0.1, alpha (diversity) 0.1, feature penalty 10,
         Gumbel temperature 2 -> 0.5 by 0.999995 per update, LayerDrop 0.05, the feature
         encoder's gradient scaled by 0.1 (fairseq's feature_grad_mult), Adam 5e-4 (betas 0.9,
         0.98, eps 1e-6, weight decay 0.01) with 8 % linear warm-up then linear decay, 400k
         updates, crops
         of 250k samples (15.6 s = 390 frames; all of one length, as its GroupNorm sees
         padding). The paper's batch is 1.4M samples per GPU on 64 GPUs; here batch 64 crops.
"""

import dataclasses

import ml_collections

from experiments.configs import common
from talking_heads.audio import wav2vec2


def encoder_fields(name: str, **overrides) -> ml_collections.ConfigDict:
  fields = dataclasses.asdict(dataclasses.replace(wav2vec2.get_config(name), **overrides))
  return ml_collections.ConfigDict(fields)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg)
  variant = parsed.variant
  c = common.trainer_config("wav2vec2_pretrain", variant)
  c.model = ml_collections.ConfigDict({
      "encoder": encoder_fields("base", layerdrop=0.05, feature_grad_scale=0.1),
      "num_groups": 2, "num_entries": 320,
      "codevector_dim": 256, "final_dim": 256, "dtype": "float32"})
  c.loss = ml_collections.ConfigDict({
      "mask_prob": 0.065, "mask_length": 10, "min_masks": 2, "num_negatives": 100,
      "kappa": 0.1, "diversity_weight": 0.1, "feature_penalty": 10.0, "gumbel_start": 2.0,
      "gumbel_end": 0.5, "gumbel_decay": 0.999995})
  c.data.update({"root": "", "identities": "", "min_length": 125, "max_length": 390,
                 "eval_split": "val", "eval_seed": 0})
  c.optimizer.update(name="adamw", learning_rate=5e-4, b2=0.98, eps=1e-6, weight_decay=0.01,
                     schedule="warmup_linear", warmup_steps=32_000)
  if variant == "tiny":
    c.model.update(encoder=encoder_fields("tiny", hidden_dropout=0.0, activation_dropout=0.0,
                                                  layerdrop=0.0),
                   num_entries=8, codevector_dim=16, final_dim=16)
    # Measured on the test's tone sequences: with the paper's alpha = 0.1 the tiny codebook fell
    # to 2-4 of its 16 codes (tau from 2) or to one per group by update 50 (tau from 0.5; every
    # distractor then equals its target: contrastive loss 0); alpha = 0.3 with tau from 0.5
    # kept 10-15 codes in use while the contrastive loss fell.
    c.loss.update(num_negatives=10, diversity_weight=0.3, gumbel_start=0.5, gumbel_end=0.1,
                  gumbel_decay=0.98)
    c.data.update(min_length=16, max_length=32, eval_split="test")
    c.optimizer.update(learning_rate=2e-3, schedule="constant", warmup_steps=0)
  elif variant == "demo":
    c.model.update(encoder=encoder_fields(
        "tiny", hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=512, conv_dim=(128,) * 7, num_conv_pos_embeddings=32,
        num_conv_pos_embedding_groups=8, layerdrop=0.0), num_entries=32, codevector_dim=64,
        final_dim=64)
    # Measured on the demo corpus with the paper's alpha = 0.1: both codebooks collapsed to about
    # one code each by update 200 (code perplexity 18 -> 2.1 of 64, eval accuracy 0.999 with
    # contrastive loss 0.006: every distractor equals its target, nothing left to learn).
    c.loss.update(num_negatives=20, diversity_weight=0.5, gumbel_decay=0.999)
    c.data.update(min_length=25, max_length=100)
    c.optimizer.update(schedule="warmup_cosine", warmup_steps=200, end_lr_factor=0.05)
    c.total_steps, c.eval_batch_size = 800, 8
  elif variant == "paper":
    # The base encoder's GroupNorm sees padding: train on whole crops only.
    c.data.update(min_length=390, max_length=390)
    c.total_steps, c.eval_every, c.checkpoint_every = 400_000, 10_000, 10_000
  return common.apply_overrides(c, parsed)
