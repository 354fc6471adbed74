import sys
from pathlib import Path

import pytest
import torch

# model_synth.py sits beside the tests; make it importable however pytest is invoked.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
