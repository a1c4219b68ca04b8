"""RADIO: one-shot, reference-agnostic dubbing (Lee et al., WACV 2024).

Stages `radio_sync` (the grayscale sync discriminator, `radio_sync`) and `radio` (the generator
against the StyleGAN2 discriminator and the frozen sync discriminator, `radio`); inference entry
`radio` (one reference frame, any-length audio, through the shared video module: `inference`).
The networks are `talking_heads.models.radio` (generator) and `talking_heads.models.radio_sync`
(sync discriminator), the StyleGAN2 discriminator `talking_heads.nn.stylegan`'s; their sizes per
variant are `sizes`. Tables 1-3 and the reference-robustness scoring on held-out identities:
`evaluation` (commands `experiments.radio.tables` and `experiments.radio.robustness`); the
main-job part (`main_part`) trains both stages on its own `radio` preset corpus; the notebook
`experiments/notebooks/radio.py` runs that part and shows a held-out identity dubbed one-shot.
"""

from talking_heads.systems.api import Generator, MainPart, System

# The main-job part's corpus: the person-agnostic preset (demo: as published, 50 + 10 identities
# at 96 px); tiny: 3 + 1 identities at 32 px (the tiny stages' size), about 20 s to build.
# Minutes: tiny 4.0, measured on the shared 2 cores at load ~10 (December 2026; the whole part,
# tests/systems/radio/evaluation_test.py; the radio stage's compilation takes most of it); demo
# 24.9 measured on free cores with the corpus already built (1.1 min more when it is not):
# radio_sync 3000 steps 9.0 min, radio 300 steps about 14, video and Table 1 under a minute
# (experiments/results/radio_demo).
_TINY_CORPUS = dict(preset="radio", identities=3, heldout_identities=1, minutes=0.08,
                    heldout_minutes=0.05, heldout_voice_clips=1, size=32)

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
    ),
    main_part=MainPart(
        title="RADIO: sync discriminator + one-shot generator, video and Table 1",
        run="talking_heads.systems.radio.main_part:run",
        after=("experts",),
        minutes={"tiny": 4.0, "demo": 25},
        corpus={"tiny": _TINY_CORPUS, "demo": dict(preset="radio")}),
    reproduce="talking_heads.systems.radio.evaluation:paper_rows")
