"""Weights & Biases without prompts: offline when there are no credentials, synced later."""

from __future__ import annotations

import netrc
import os


def use_wandb_offline_without_credentials() -> str:
    """Make W&B run offline (no prompt; `wandb sync` uploads later) unless WANDB_MODE is set or
    credentials exist (WANDB_API_KEY, or `wandb login`'s entry in ~/.netrc). Returns the mode
    in force."""
    if "WANDB_MODE" in os.environ:
        return os.environ["WANDB_MODE"]
    has_key = bool(os.environ.get("WANDB_API_KEY"))
    if not has_key:
        try:
            has_key = netrc.netrc().authenticators("api.wandb.ai") is not None
        except (FileNotFoundError, netrc.NetrcParseError):
            has_key = False
    if not has_key:
        os.environ["WANDB_MODE"] = "offline"
    return os.environ.get("WANDB_MODE", "online")
