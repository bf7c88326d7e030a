import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(autouse=True)
def _seed_and_threads():
    # Small models run fastest on one thread here; a fixed seed makes failures reproducible.
    torch.set_num_threads(1)
    torch.manual_seed(0)
