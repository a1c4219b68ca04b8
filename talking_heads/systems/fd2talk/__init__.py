"""FD2Talk: facial decoupled diffusion for talking-head generation (Yao, Cheng and Huang, ACM MM
2024; spec `shared/reference/systems/fd2talk.md`).

Networks so far: stage 1's motion diffusion transformer for expression, pose or both
(`models.fd2talk_motion`) and its lip expert (`models.fd2talk_lip_expert`); stage 2's frame
autoencoder with the reference-conditioned decoder (`models.fd2talk_autoencoder`) and the latent
UNet with the motion and reference cross-attentions (`models.fd2talk_unet`); their sizes per
variant (`sizes`). Sampling is the shared `diffusion` toolkit with x0 prediction (Eq. 5). The
package declares no SYSTEM until its stages exist.
"""
