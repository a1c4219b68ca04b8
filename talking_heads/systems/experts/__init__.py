"""Shared experts: the lip-sync training expert, the independent LSE expert, the face regressor.

Its main-job part trains the SyncNet_color expert (Wav2Lip trains against it) and the independent
evaluation expert (syncnet_python's S architecture, stage `syncnet_eval`, which scores LSE), and
checks the LSE evaluator with both (planted audio shifts, foreign audio); later parts use them
(`artefacts["syncnet_workdir"]`, `artefacts["sync_eval_workdir"]`).
"""

from talking_heads.systems.api import MainPart, System

SYSTEM = System(
    name="experts",
    title=("Shared experts: lip-sync experts (SyncNet_color for training, syncnet_python's S "
           "for LSE) and face regressor"),
    stages={"syncnet": "talking_heads.systems.experts.syncnet:SyncNetStage",
            "syncnet_eval": "talking_heads.systems.experts.syncnet_eval:SyncNetEvalStage",
            "face_regressor": "talking_heads.systems.experts.face_regressor:FaceRegressorStage"},
    main_part=MainPart(
        title="Lip-sync expert and LSE evaluator check",
        run="talking_heads.systems.experts.main_part:run",
        minutes={"tiny": 1, "demo": 50}))   # demo: colour 32 + independent 15 + checks 3 (measured)
