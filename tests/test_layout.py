"""The two layers: the model library imports only torch and einops; the app is beside it."""

import subprocess
import sys

APP_PACKAGES = ("lightning", "hydra", "omegaconf", "wandb", "matplotlib")


def test_the_library_and_the_tasks_import_no_experiment_machinery():
    probe = (
        "import sys, ntm, ntm.addressing, ntm.memory, ntm.heads, ntm.controllers, ntm.baselines, "
        "ntm.metrics, tasks; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({APP_PACKAGES!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_library_does_not_import_the_app_or_the_tasks():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "ntm"
    for path in root.rglob("*.py"):
        if "experiment" in path.parts:
            continue
        source = path.read_text()
        assert "ntm.experiment" not in source and "import tasks" not in source, path
        assert "from tasks" not in source, path
