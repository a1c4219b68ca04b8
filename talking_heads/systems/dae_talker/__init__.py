"""DAE-Talker: a diffusion autoencoder's per-frame latents predicted from speech by Conformers.

Stages `dae` and `speech2latent` (the face regressor of its Table 4 is a shared expert);
inference entry `dae_talker` (speech -> latents -> DDIM decoding from one shared x_T); Tables
1-4 at small scale (`evaluation`).
"""

from talking_heads.systems.api import Generator, MainPart, System

SYSTEM = System(
    name="dae_talker",
    title="DAE-Talker (diffusion autoencoder + speech2latent)",
    paper="dae_talker",
    stages={"dae": "talking_heads.systems.dae_talker.dae:DAEStage",
            "speech2latent": "talking_heads.systems.dae_talker.speech2latent:Speech2LatentStage"},
    generators=(
        Generator(
            name="dae_talker",
            description="Speech -> latents -> DDIM decoding of every frame from one shared x_T.",
            weights={"dae_workdir": "Trained diffusion-autoencoder workdir (dae_talker).",
                     "speech2latent_workdir": "Trained speech2latent workdir (dae_talker)."},
            options={
                "pose": ("natural", "dae_talker head pose: 'natural' (predicted from the speech), "
                         "'yaw=..,pitch=..,roll=..' in degrees, or a .npy/.txt/.csv file of "
                         "[T, 3] degrees."),
                "noise": ("shared", "dae_talker: one random x_T for all frames (the paper), "
                          "'independent' (one per frame), or 'reference' (inverted from the "
                          "first frame of --video)."),
                "sample_steps": ("100", "dae_talker: DDIM steps."),
                "seed": ("0", "dae_talker: seed of x_T."),
            },
            needs_video=False,
            load="talking_heads.systems.dae_talker.inference:load_generator",
            check="talking_heads.systems.dae_talker.inference:check_request"),
    ),
    main_part=MainPart(
        title="DAE-Talker: autoencoder, latents, speech2latent, video and Tables 1-4",
        run="talking_heads.systems.dae_talker.main_part:run",
        after=("experts",),
        minutes={"tiny": 2, "demo": 75}),
    reproduce="talking_heads.systems.dae_talker.evaluation:paper_rows")
