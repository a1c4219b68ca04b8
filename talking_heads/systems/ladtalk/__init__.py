"""LaDTalk: Wav2Lip (trained against a frozen lip-sync expert) + a per-identity SOVQAE.

Stages `wav2lip` and `sovqae`; inference entries `wav2lip` (the base model alone, also from the
public checkpoint) and `ladtalk`; Tables 1/2 at small scale (`evaluation`), Table 3
(`experiments.ladtalk.regulariser_ablation`), Fig. 2 and the noise-tolerance analysis.
"""

from talking_heads.systems.api import Generator, MainPart, System

_WAV2LIP_WEIGHTS = {
    "wav2lip_workdir": "Trained Wav2Lip workdir (stage 'wav2lip').",
    "wav2lip_checkpoint": "Public wav2lip.pth / wav2lip_gan.pth (instead of a workdir).",
}

SYSTEM = System(
    name="ladtalk",
    title="LaDTalk (Wav2Lip + SOVQAE latent denoising)",
    paper="ladtalk",
    stages={"wav2lip": "talking_heads.systems.ladtalk.wav2lip:Wav2LipStage",
            "sovqae": "talking_heads.systems.ladtalk.sovqae:SOVQAEStage"},
    generators=(
        Generator(name="wav2lip", description="Wav2Lip alone (LaDTalk's base model).",
                  weights=_WAV2LIP_WEIGHTS,
                  load="talking_heads.systems.ladtalk.inference:load_wav2lip_generator"),
        Generator(name="ladtalk", description="Wav2Lip faces denoised by the identity's SOVQAE.",
                  weights={**_WAV2LIP_WEIGHTS,
                           "sovqae_workdir": "The identity's trained SOVQAE workdir (ladtalk)."},
                  load="talking_heads.systems.ladtalk.inference:load_ladtalk_generator"),
    ),
    main_part=MainPart(
        title="LaDTalk: Wav2Lip + SOVQAE, videos and Tables 1/2",
        run="talking_heads.systems.ladtalk.main_part:run",
        after=("experts",),
        minutes={"tiny": 1.5, "demo": 30}),   # demo: measured rates on free cores (results README)
    reproduce="talking_heads.systems.ladtalk.evaluation:paper_rows")
