import pytest
import torch


@pytest.fixture(autouse=True)
def _quiet_and_reproducible(monkeypatch):
    # No W&B unless a test turns it on; small models run fastest on one thread here; a fixed
    # seed makes failures reproducible.
    monkeypatch.setenv("WANDB_MODE", "disabled")
    torch.set_num_threads(1)
    torch.manual_seed(0)
