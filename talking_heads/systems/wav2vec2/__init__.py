"""wav2vec 2.0 pretraining: a speech front end trained on a corpus without public weights.

Stage `wav2vec2_pretrain` (no paper of the project, no inference entry, no main-job part); its
encoder loads through `talking_heads.pretrained.wav2vec2.load_encoder`, like the public
checkpoints, for `experiments.precompute_audio_features`.
"""

from talking_heads.systems.api import System

SYSTEM = System(
    name="wav2vec2",
    title="wav2vec 2.0 self-supervised pretraining (audio front end)",
    stages={"wav2vec2_pretrain": "talking_heads.systems.wav2vec2.pretrain:Wav2Vec2PretrainStage"})
