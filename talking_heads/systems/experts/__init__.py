"""Shared experts: the lip-sync expert (training loss and LSE scorer) and the face regressor.

Its main-job part trains the SyncNet_color expert and checks the LSE evaluator with it (planted
audio shifts, foreign audio); later parts use the expert (`artefacts["syncnet_workdir"]`).
"""

from talking_heads.systems.api import MainPart, System

SYSTEM = System(
    name="experts",
    title="Shared experts: lip-sync expert (SyncNet_color) and face regressor",
    stages={"syncnet": "talking_heads.systems.experts.syncnet:SyncNetStage",
            "face_regressor": "talking_heads.systems.experts.face_regressor:FaceRegressorStage"},
    main_part=MainPart(
        title="Lip-sync expert and LSE evaluator check",
        run="talking_heads.systems.experts.main_part:run",
        minutes={"tiny": 0.5, "demo": 42}))
