"""FD2Talk: facial decoupled diffusion for talking-head generation (Yao, Cheng and Huang, ACM MM
2024; spec `shared/reference/systems/fd2talk.md`).

Networks so far: stage 1's motion diffusion transformer for expression, pose or both
(`models.fd2talk_motion`) and its lip expert (`models.fd2talk_lip_expert`); stage 2's frame
autoencoder with the reference-conditioned decoder (`models.fd2talk_autoencoder`) and the latent
UNet with the motion and reference cross-attentions (`models.fd2talk_unet`); their sizes per
variant (`sizes`).

Sampling is the shared `diffusion` toolkit: Eq. 5 is `samplers.sample(...,
config=StepConfig(prediction="x0"), eta=0)` over `schedules.make_timesteps("leading", 50, 1000)`
(final alpha 1, each step moving to the next timestep), which is DreamTalk's 1-based
`range(0, 1000, 20) + 1` on a schedule padded with abar = 1 (tests/models/fd2talk_motion_test.py).

The package declares no SYSTEM until its stages exist.
"""
