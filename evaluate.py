"""Evaluate a trained run's checkpoint on its generalisation and capacity grids.

    python evaluate.py <run>/checkpoints/best.ckpt
    python evaluate.py <run>/checkpoints/best.ckpt evaluation.grid.length=[20,40,80,160] \\
        evaluation.capacity.slots=[64,128,256,512]

Overrides are dot-list `key=value` pairs on the run's saved config. Writes results.json,
generalisation.png and capacity.png into the run folder (the checkpoint's grandparent).
"""

import sys

from ntm.training import ConfigError, evaluate_checkpoint


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    ckpt_path, overrides = argv[0].removeprefix("ckpt_path="), argv[1:]
    try:
        results = evaluate_checkpoint(ckpt_path, overrides)
    except (ConfigError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    generalisation = results["generalisation"]
    print(
        f"longest {generalisation['parameter']} solved: {generalisation['longest_solved']}; "
        f"per memory size: {results['capacity'].get('longest_solved')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
