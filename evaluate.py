"""Evaluate a trained run's checkpoint on its generalisation and capacity grids.

    python evaluate.py ckpt_path=<run>/checkpoints/best.ckpt
    python evaluate.py ckpt_path=<run>/checkpoints/best.ckpt \\
        'evaluation.grid={length:[20,40,80,160]}' 'evaluation.capacity.slots=[64,128,256,512]'

The model, task and evaluation settings come from the checkpoint; `evaluation.*` overrides
change the settings (configs/eval.yaml lists them). Writes results.json, generalisation.png and
capacity.png into its own folder, outputs/evaluate/<time>/ (`hydra.run.dir=...` to choose):
a run's own records are never overwritten.
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ntm.experiment.config import ConfigError
from ntm.experiment.evaluation import evaluate_checkpoint


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    output_dir = HydraConfig.get().runtime.output_dir
    try:
        results = evaluate_checkpoint(cfg, output_dir)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    grid = results.generalisation
    capacity = results.capacity.longest_solved if results.capacity else "-"
    print(
        f"longest {grid.parameter} solved: {grid.longest_solved}; per memory size: {capacity}; "
        f"written to {output_dir}"
    )


if __name__ == "__main__":
    main()
