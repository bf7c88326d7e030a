"""The experiment app: training, evaluation and comparison with Lightning, Hydra, W&B and
matplotlib (``pip install "torch-ntm[train]"``). The model library (`ntm`) never imports it.

One concern per module: `config` (config -> objects, `ConfigError`), `run` (a training run),
`evaluation` (grids; a checkpoint's evaluation), `results` (the records written and read),
`compare` (runs -> tables), `module` (the LightningModule), `callbacks`, `data`,
`dashboard` (what reaches W&B), `plots`.
"""
