"""PIR: person-specific reenactment with a parametric implicit face (Huang et al., CVPR 2023).

Stages, one model set per person (`data.identities`):
  `pir_audio2exp`  component A, audio -> expression coefficients (`audio2exp`);
  `pir_triplane`   component B, the EG3D tri-plane generator of the feature image I_F with the
                   proxy upsampler to the face (`triplane`);
  `pir_renderer`   component C, the inpainting renderer of the frame from the masked frame and
                   the K-jittered I_F of the frozen, trained B, against a 3-scale discriminator
                   (`renderer`).
The networks are `talking_heads.models.pir_audio2exp`, `models.triplane`, `models.pir_renderer`
with the geometry of `talking_heads.rendering`; their sizes per variant are `sizes`. Inference
entry `pir` (a target clip with its morphable fit re-enacted by speech, optionally under a
changed head pose: `inference`); Tables 1 and 2 at small scale with the expression check,
supplementary Table 1 (context length k) and the ablations "without rendering" and "without
jitter" with numbers, with the geometric checks (`evaluation`); the main-job part trains the
three components on the job's identity, re-enacts its held-out-voice clip and fills Tables 1/2
(`main_part`); `experiments/notebooks/pir.py` runs that part and shows its results.
"""

from talking_heads.systems.api import Generator, MainPart, System

SYSTEM = System(
    name="pir",
    title="PIR (person-specific reenactment with a parametric implicit face)",
    paper="pir",
    stages={"pir_audio2exp": "talking_heads.systems.pir.audio2exp:Audio2ExpressionStage",
            "pir_triplane": "talking_heads.systems.pir.triplane:TriplaneStage",
            "pir_renderer": "talking_heads.systems.pir.renderer:RendererStage"},
    generators=(
        Generator(
            name="pir",
            description="PIR: expressions from speech, the target clip's pose and camera, its "
                        "head re-rendered by the person's tri-plane and inpainting renderer.",
            weights={"pir_audio2exp_workdir": "Trained component A workdir (pir_audio2exp).",
                     "pir_triplane_workdir": "Trained component B workdir (pir_triplane); default: "
                                             "the one the renderer trained against.",
                     "pir_renderer_workdir": "Trained component C workdir (pir_renderer)."},
            options={
                "pose": ("natural", "pir: 'natural' (the target's own head pose) or yaw, pitch, "
                         "roll offsets in degrees added to the target's pose of every frame: "
                         "'yaw=..,pitch=..,roll=..' or a .npy/.txt/.csv file of [T, 3] degrees."),
                "target_clip": ("", "pir: the target video as ROOT:CLIP_ID, a clip of a dataset "
                                "with its morphable-model fit (or give --video=ROOT/clips/CLIP_ID/"
                                "<any file>)."),
            },
            needs_video=False,
            load="talking_heads.systems.pir.inference:load_generator",
            check="talking_heads.systems.pir.inference:check_request"),
    ),
    main_part=MainPart(
        title="PIR: components A, B, C, a held-out-voice video and Tables 1/2",
        run="talking_heads.systems.pir.main_part:run",
        after=("experts",),
        # demo: budgeted from timed demo steps (main_part.STEPS); tiny: measured 3.5 min with
        # the 2 cores shared by other trainings (the face regressor's 6 s included).
        minutes={"tiny": 3, "demo": 25}),
    reproduce="talking_heads.systems.pir.evaluation:paper_rows",
)
