"""RADIO: one-shot, reference-agnostic dubbing (Lee et al., WACV 2024).

Stages `radio_sync` (the grayscale sync discriminator, `radio_sync`) and `radio` (the generator
against the StyleGAN2 discriminator and the frozen sync discriminator, `radio`); inference entry
`radio` (one reference frame, any-length audio, through the shared video module: `inference`).
The networks are `talking_heads.models.radio` (generator) and `talking_heads.models.radio_sync`
(sync discriminator), the StyleGAN2 discriminator `talking_heads.nn.stylegan`'s; their sizes per
variant are `sizes`. Tables, the main-job part and the notebook come later.
"""

from talking_heads.systems.api import Generator, System

SYSTEM = System(
    name="radio",
    title="RADIO (one-shot reference-agnostic dubbing)",
    paper="radio",
    stages={"radio_sync": "talking_heads.systems.radio.radio_sync:RadioSyncStage",
            "radio": "talking_heads.systems.radio.radio:RadioStage"},
    generators=(
        Generator(
            name="radio",
            description="RADIO: the lower face from speech, one reference frame (one-shot).",
            weights={"radio_workdir": "Trained RADIO generator workdir (stage 'radio')."},
            options={"face": ("", "radio: the identity, an image or a video (default: --video); "
                              "the reference is its first frame.")},
            needs_video=False,
            load="talking_heads.systems.radio.inference:load_generator",
            check="talking_heads.systems.radio.inference:check_request"),
    ))
