"""PIR: person-specific reenactment with a parametric implicit face (Huang et al., CVPR 2023).

Stages, one model set per person (`data.identities`):
  `pir_audio2exp`  component A, audio -> expression coefficients (`audio2exp`);
  `pir_triplane`   component B, the EG3D tri-plane generator of the feature image I_F with the
                   proxy upsampler to the face (`triplane`);
  `pir_renderer`   component C, the inpainting renderer of the frame from the masked frame and
                   the K-jittered I_F of the frozen, trained B, against a 3-scale discriminator
                   (`renderer`).
The networks are `talking_heads.models.pir_audio2exp`, `models.triplane`, `models.pir_renderer`
with the geometry of `talking_heads.rendering`; their sizes per variant are `sizes`. Inference,
tables, the main-job part and the notebook come later.
"""

from talking_heads.systems.api import System

SYSTEM = System(
    name="pir",
    title="PIR (person-specific reenactment with a parametric implicit face)",
    paper="pir",
    stages={"pir_audio2exp": "talking_heads.systems.pir.audio2exp:Audio2ExpressionStage",
            "pir_triplane": "talking_heads.systems.pir.triplane:TriplaneStage",
            "pir_renderer": "talking_heads.systems.pir.renderer:RendererStage"},
)
