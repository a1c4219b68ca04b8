"""The frame autoencoder: the trainer's reference stage (no paper, no inference, no main part)."""

from talking_heads.systems.api import System

SYSTEM = System(
    name="frame_autoencoder",
    title="Frame autoencoder (the trainer's reference stage)",
    stages={"frame_autoencoder": "talking_heads.systems.frame_autoencoder.stage:FrameAutoencoderStage"})
