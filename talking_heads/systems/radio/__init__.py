"""RADIO: one-shot, reference-agnostic dubbing (Lee et al., WACV 2024).

Networks so far: the generator (`networks`: content, style and audio encoders, StyleGAN2 decoder
with ViT fidelity blocks), the grayscale sync discriminator (`sync_discriminator`) and their
sizes per variant (`sizes`); the StyleGAN2 discriminator is `talking_heads.nn.stylegan`'s.
The package declares no SYSTEM until its stages exist.
"""
