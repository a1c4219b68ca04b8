"""FD2Talk: facial decoupled diffusion for talking-head generation (Yao, Cheng and Huang, ACM MM
2024; spec `shared/reference/systems/fd2talk.md`).

Stages so far (stage 1, motion from audio):
  `fd2talk_lip_expert`  the SyncNet-style lip expert on 3D mouth points and audio, BCE on
                        in/off-sync pairs (`lip_expert`); trained first, frozen in stage 1;
  `fd2talk_motion`      the Exp or Pose Transformer, or the joint single-DiT ablation
                        (`model.motion`), x0-prediction diffusion on audio features with the
                        alignment mask and, for expressions, the frozen expert's L_sync (`motion`).
Both read the morphable-model parameters and per-frame audio features of `features`.
Stage 2, frames:
  `fd2talk_autoencoder` the frame autoencoder whose decoder reads [E(F1), E(F2)], L2 +
                        perceptual + VQ terms on pairs of frames of one clip (`autoencoder`);
  `fd2talk_unet`        x0-prediction latent diffusion in the frozen autoencoder's latent space,
                        phi1 on the frame's motion, phi2 on the reference latent, or the
                        concatenated-conditions ablation (`model.conditioning`) (`unet`).

Networks: stage 1's motion diffusion transformer for expression, pose or both
(`models.fd2talk_motion`) and its lip expert (`models.fd2talk_lip_expert`); stage 2's frame
autoencoder with the reference-conditioned decoder (`models.fd2talk_autoencoder`) and the latent
UNet with the motion and reference cross-attentions (`models.fd2talk_unet`); their sizes per
variant (`sizes`).

Inference entry `fd2talk` (`inference`): one face (an image or a video) and any-length audio ->
expression and pose from the DiTs in overlapping windows -> each frame by the latent UNet's DDIM
from one shared x_T, decoded with the reference latent -> pasted back by the shared video
module. Tables 1-3 at small scale with stage 1 checked against the corpus's truth
(`evaluation`; `experiments.fd2talk.tables`, `experiments.reproduce --paper=fd2talk`). Main-job
part (`main_part`): the four stages at the main job's step counts, a held-out-voice video and
Table 1, which `experiments/notebooks/fd2talk.py` runs and shows.

Sampling is the shared `diffusion` toolkit: Eq. 5 is `samplers.sample(...,
config=StepConfig(prediction="x0"), eta=0)` over `schedules.make_timesteps("leading", 50, 1000)`
(final alpha 1, each step moving to the next timestep), which is DreamTalk's 1-based
`range(0, 1000, 20) + 1` on a schedule padded with abar = 1 (tests/models/fd2talk_motion_test.py).
"""

from talking_heads.systems.api import Generator, MainPart, System

SYSTEM = System(
    name="fd2talk",
    title="FD2Talk (facial decoupled diffusion for talking heads)",
    paper="fd2talk",
    stages={"fd2talk_lip_expert": "talking_heads.systems.fd2talk.lip_expert:LipExpertStage",
            "fd2talk_motion": "talking_heads.systems.fd2talk.motion:MotionStage",
            "fd2talk_autoencoder": "talking_heads.systems.fd2talk.autoencoder:AutoencoderStage",
            "fd2talk_unet": "talking_heads.systems.fd2talk.unet:UNetStage"},
    generators=(
        Generator(
            name="fd2talk",
            description="FD2Talk: expression and head pose from speech by two diffusion "
                        "transformers, each frame by latent diffusion from one reference face.",
            weights={
                "fd2talk_expression_workdir": "Trained FD2Talk Exp Transformer workdir "
                                              "(fd2talk_motion, model.motion=expression), or "
                                              "the joint single DiT (model.motion=joint).",
                "fd2talk_pose_workdir": "Trained FD2Talk Pose Transformer workdir (fd2talk_motion, "
                                        "model.motion=pose); empty with a joint DiT.",
                "fd2talk_unet_workdir": "Trained FD2Talk latent UNet workdir (fd2talk_unet).",
                "fd2talk_autoencoder_workdir": "FD2Talk frame autoencoder workdir "
                                               "(fd2talk_autoencoder); default: the one the UNet "
                                               "trained with.",
            },
            options={
                "face": ("", "fd2talk: the identity, an image or a video (default: --video); "
                         "the reference is its first frame."),
                "seed": ("0", "fd2talk: seed of every x_T (different seeds, different head "
                         "motion)."),
                "ddim_steps": ("", "fd2talk: DDIM steps of the DiTs and the UNet (default: each "
                               "workdir's config, 50)."),
                "motion_overlap": ("", "fd2talk: frames shared by consecutive motion windows "
                                   "(default: a fifth of the DiT's window)."),
            },
            needs_video=False,
            load="talking_heads.systems.fd2talk.inference:load_generator",
            check="talking_heads.systems.fd2talk.inference:check_request"),
    ),
    # Minutes: demo is the budget the step counts were chosen for (main_part's docstring, from
    # the stages' measured demo speeds); tiny measured: 7.4 min on 2 cores shared at load ~10.
    main_part=MainPart(
        title="FD2Talk: lip expert, DiTs, autoencoder, UNet, video and Table 1",
        run="talking_heads.systems.fd2talk.main_part:run",
        after=("experts",),
        minutes={"tiny": 7, "demo": 25}),
    reproduce="talking_heads.systems.fd2talk.evaluation:paper_rows",
)
