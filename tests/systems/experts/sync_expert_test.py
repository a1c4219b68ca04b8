"""The frozen lip-sync expert's loader refuses a workdir that was never trained."""

import re

import ml_collections
import pytest

from experiments.configs.experts import syncnet as syncnet_config
from talking_heads.systems.experts import sync_expert


def test_wav2lip_and_lse_refuse_an_untrained_expert_workdir(untrained_workdir):
  workdir = untrained_workdir(syncnet_config.get_config("tiny"))
  name = re.escape(workdir)
  with pytest.raises(FileNotFoundError, match=rf"sync_expert\.workdir='{name}' is not a trained "
                                              rf"'syncnet' stage \({name} was never trained"):
    sync_expert.load_frozen_expert(ml_collections.ConfigDict({"workdir": workdir}))
  with pytest.raises(FileNotFoundError, match=rf"{name} was never trained"):
    sync_expert.lse_expert(workdir)
