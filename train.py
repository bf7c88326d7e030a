"""Train an NTM (or the LSTM baseline) on an algorithmic task: ``python train.py [overrides]``.

python train.py                                   # copy, LSTM controller, W&B offline
python train.py controller=mlp task=associative_recall
python train.py -m controller=lstm,mlp,transformer seed=0,1,2
python train.py -m controller=lstm,mlp seed=0,1 hydra/launcher=submitit_slurm   # on SLURM

`controller=` and `memory=` are short for the groups nested in the model, `model/controller=`
and `model/memory=`; they are spelled out here, before Hydra parses the command line, so
every launcher's jobs get the full names.
"""

import sys

from ntm import fused

fused.prepare()  # build the fused sequence's C++ library while the imports below run

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, read_write  # noqa: E402

from ntm.experiment.callbacks import TrainingDiverged  # noqa: E402
from ntm.experiment.config import ConfigError, expand_aliases  # noqa: E402
from ntm.experiment.run import train  # noqa: E402


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        # Lightning's DDP starts a job's other processes by re-running sys.argv with
        # hydra.run.dir set to this job's run.dir; in a sweep that would re-run the whole sweep
        # elsewhere. Make it this job alone, in this job's folder.
        sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        train(cfg, hydra_cfg.runtime.output_dir)
    except ConfigError as error:  # bad input: exit 2 (in a sweep too: every job would fail)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # Hydra records this job as failed and runs the sweep's other jobs
        sys.exit(1)


if __name__ == "__main__":
    sys.argv[1:] = expand_aliases(sys.argv[1:])
    main()
