"""Figures: one sequence's input, target, output and head weightings over time (the paper's
figures 6, 9 and 12). Needs matplotlib (``pip install torch-ntm[viz]``)."""

from __future__ import annotations

from torch import Tensor


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on servers and in CI
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("figures need matplotlib: pip install 'torch-ntm[viz]'") from error
    return plt


def plot_sequence(
    inputs: Tensor,
    targets: Tensor,
    outputs: Tensor,
    read_weights: Tensor | None = None,
    write_weights: Tensor | None = None,
    title: str = "",
):
    """One sequence: inputs (t, i), targets and outputs (t, o) as probabilities, and the first
    read and write head's weightings (t, h, n), each drawn with time along the x-axis.
    Returns a matplotlib Figure."""
    plt = _pyplot()
    panels = [("input", inputs), ("target", targets), ("output", outputs)]
    if write_weights is not None:
        panels.append(("write weighting (head 0)", write_weights[:, 0]))
    if read_weights is not None:
        panels.append(("read weighting (head 0)", read_weights[:, 0]))
    heights = [p.shape[1] for _, p in panels]
    figure, axes = plt.subplots(
        len(panels),
        1,
        figsize=(8, 1.2 + 0.05 * sum(heights)),
        sharex=True,
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for axis, (name, values) in zip(axes[:, 0], panels, strict=True):
        axis.imshow(
            values.detach().float().cpu().T,
            aspect="auto",
            cmap="gray_r",
            vmin=0,
            vmax=1,
            interpolation="nearest",
        )
        axis.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        axis.set_yticks([])
    axes[-1, 0].set_xlabel("time step")
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def save(figure, path) -> None:
    """Write a figure to `path` (PNG) and free it."""
    plt = _pyplot()
    figure.savefig(path, dpi=100)
    plt.close(figure)
