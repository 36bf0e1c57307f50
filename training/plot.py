"""Training curves as a PNG: ``crnn plot RUN_DIR`` for one run (also written at the end of every run),
``crnn plot RUN_DIR RUN_DIR ... --out FILE`` for several runs overlaid against images seen (budget-matched sets)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def read_metrics(run: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(training records, validation records) of run/metrics.jsonl."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run}: no metrics.jsonl (is this a run folder?)")
    recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in recs if r.get("kind") == "train"], [r for r in recs if r.get("kind") == "val"]


def plot_run(run: str | Path, out: str | Path | None = None) -> Path:
    """Draw loss, learning rate, gradient norms, throughput and validation accuracy/CER; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    run = Path(run)
    train, val = read_metrics(run)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    steps = [r["step"] for r in train]
    ax = axes[0, 0]
    ax.plot(steps, [r["loss"] for r in train])
    ax.set(title="CTC loss", xlabel="step", yscale="log")
    ax = axes[0, 1]
    ax.plot(steps, [r["lr"] for r in train])
    ax.set(title="learning rate", xlabel="step")
    ax = axes[0, 2]
    ax.plot(steps, [r["grad_norm"] for r in train], label="all (before clipping)")
    ax.plot(steps, [r["rnn_grad_norm"] for r in train], label="recurrent layers")
    ax.set(title="gradient norm", xlabel="step", yscale="log")
    ax.legend()
    ax = axes[1, 0]
    ax.plot(steps, [r["images_per_s"] for r in train], label="images/s")
    ax.set(title="throughput", xlabel="step")
    ax2 = ax.twinx()
    ax2.plot(steps, [100 * r["data_wait_frac"] for r in train], color="tab:red", alpha=0.6, label="waiting on data %")
    ax2.set_ylabel("waiting on data (%)")
    vsteps = [r["step"] for r in val]
    sets = sorted({k.split("/")[0] for r in val for k in r if "/" in k})
    for name in sets:
        axes[1, 1].plot(vsteps, [100 * r.get(f"{name}/word_accuracy_protocol", float("nan")) for r in val], marker="o", label=f"{name} (protocol)")
        axes[1, 1].plot(vsteps, [100 * r.get(f"{name}/word_accuracy_case", float("nan")) for r in val], marker=".", linestyle="--", label=f"{name} (case)")
        axes[1, 2].plot(vsteps, [r.get(f"{name}/cer", float("nan")) for r in val], marker="o", label=name)
    axes[1, 1].set(title="validation word accuracy (%)", xlabel="step")
    axes[1, 2].set(title="validation CER", xlabel="step")
    for ax in (axes[1, 1], axes[1, 2]):
        if sets:
            ax.legend(fontsize=8)
    fig.suptitle(str(run))
    fig.tight_layout()
    path = Path(out) if out else run / "curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_runs(runs: list[str | Path], out: str | Path, metric: str = "synth/word_accuracy_protocol") -> Path:
    """Overlay several runs against images seen: training loss and validation ``metric``; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, val_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for run in map(Path, runs):
        train, val = read_metrics(run)
        loss_ax.plot([r["images_seen"] for r in train], [r["loss"] for r in train], label=run.name)
        val_ax.plot([r["images_seen"] for r in val if metric in r], [100 * r[metric] for r in val if metric in r],
                    marker="o", label=run.name)
    loss_ax.set(title="training loss", xlabel="images seen", yscale="log")
    val_ax.set(title=f"validation: {metric} (%)", xlabel="images seen")
    for ax in (loss_ax, val_ax):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    """``crnn plot RUN_DIR [RUN_DIR ...] [--out FILE.png]``."""
    p = argparse.ArgumentParser(prog="crnn plot", description="Plot the training curves of a run folder, or of "
                                "several overlaid against images seen.")
    p.add_argument("run_dir", nargs="+")
    p.add_argument("--out", help="PNG path (default RUN_DIR/curves.png; required for several runs)")
    p.add_argument("--metric", default="synth/word_accuracy_protocol", help="validation metric of the overlay")
    args = p.parse_args(argv)
    if len(args.run_dir) > 1 and not args.out:
        print("crnn plot: error: several runs need --out FILE.png", file=sys.stderr)
        return 2
    try:
        if len(args.run_dir) > 1:
            print(plot_runs(args.run_dir, args.out, args.metric))
        else:
            print(plot_run(args.run_dir[0], args.out))
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"crnn plot: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
