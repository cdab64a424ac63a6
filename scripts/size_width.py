"""Question 3 of docs/ablations.md: input size x width, accuracy against cost, with a Pareto plot.

    python train.py -m experiment=size_width [model.backbone.width=0.5 ...]     # the runs (lanes welcome)
    python scripts/size_width.py logs/size_width/<sweep> [more sweep folders] --rescore

Reads every run's ``metrics.json`` (rows by their ``data.input_size`` and ``model.backbone.width``
overrides, seeds by ``seed``), adds the cells already in ``docs/size_width.json`` that these folders do
not hold (cells measured in earlier sessions, whose run folders are gone), joins each cell's cost from
``docs/cost_grid_xeon_2core.json`` (`scripts/cost_grid.py`), and writes the table between the
``<!-- size_width:start -->`` and ``<!-- size_width:end -->`` markers of docs/ablations.md,
``docs/figures/size_width_pareto.png`` and ``docs/size_width.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pfld.training.ablation import collect_rows, rescore_sweeps, write_section

KEYS = ("val/nme", "val/nme_yaw_over_15", "val/nme_profile", "val/pose_mae")
SIZE, WIDTH = "data.input_size=", "model.backbone.width="


def cell_of(row_name: str) -> tuple[int, float] | None:
    """(input size, width) of a row named by its overrides; None for a row of another study."""
    parts = dict(part.split("=", 1) for part in row_name.split() if "=" in part)
    if set(parts) - {SIZE[:-1], WIDTH[:-1]} or not parts:  # another study's row
        return None
    try:
        return int(parts.get(SIZE[:-1], 112)), float(parts.get(WIDTH[:-1], 0.25))
    except ValueError:
        return None


def measured_cells(sweeps: list[Path]) -> dict[str, dict]:
    """``"<size>x<width>"`` -> seeds and mean / std of `KEYS`, from the sweep folders' runs."""
    cells = {}
    for name, row in collect_rows(sweeps).items():
        cell = cell_of(name)
        if cell is None or not row.seeds:
            continue
        stats = {key: {"mean": row.mean(key), "std": row.std(key)} for key in KEYS}
        cells[f"{cell[0]}x{cell[1]:g}"] = {"seeds": row.seeds, **stats, "source": "runs"}
    return cells


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """Whether each (cost, error) point is on the front: no other point is cheaper-or-equal and better."""
    return [not any(c2 <= c and e2 < e and (c2, e2) != (c, e) for c2, e2 in points) for c, e in points]


def _stat(cell: dict, key: str, decimals: int = 4) -> str:
    value = cell.get(key) or {}
    mean, std = value.get("mean", math.nan), value.get("std", math.nan)
    if mean is None or math.isnan(mean):
        return "-"
    return f"{mean:.{decimals}f}" + ("" if std is None or math.isnan(std) else f" ± {std:.{decimals}f}")


def table(cells: dict[str, dict], costs: dict[str, dict]) -> str:
    names = sorted(cells, key=lambda n: (float(n.split("x")[1]), int(n.split("x")[0])))
    front = dict(
        zip(names, pareto([(costs[n]["mmacs"], cells[n]["val/nme"]["mean"]) for n in names]), strict=True)
    )
    lines = [
        "| input | width | MMACs | int8 ms | seeds | NME | NME yaw > 15° | profile (10) | pose MAE ° | Pareto |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for n in names:
        cell, cost = cells[n], costs[n]
        size, width = n.split("x")
        lines.append(
            f"| {size} | {width} | {cost['mmacs']:.1f} | {cost['int8_ms']:.2f} | {len(cell['seeds'])} | "
            f"{_stat(cell, 'val/nme')} | {_stat(cell, 'val/nme_yaw_over_15')} | {_stat(cell, 'val/nme_profile')} | "
            f"{_stat(cell, 'val/pose_mae', 2)} | {'yes' if front[n] else ''} |"
        )
    return "\n".join(lines)


def plot(cells: dict[str, dict], costs: dict[str, dict], path: Path) -> None:
    """NME against MMACs and against int8 latency, mean ± std, the Pareto front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colours = {0.25: "tab:blue", 0.5: "tab:orange", 1.0: "tab:green"}
    for ax, (key, label) in zip(
        axes, (("mmacs", "MMACs (log)"), ("int8_ms", "int8 latency, ms, 1 x86 thread (log)")), strict=True
    ):
        names = sorted(cells, key=lambda n: costs[n][key])
        x = [costs[n][key] for n in names]
        y = [cells[n]["val/nme"]["mean"] for n in names]
        err = [cells[n]["val/nme"]["std"] or 0.0 for n in names]
        for n, xi, yi, ei in zip(names, x, y, err, strict=True):
            width = float(n.split("x")[1])
            ax.errorbar(xi, yi, yerr=ei, fmt="o", color=colours.get(width, "k"), capsize=3)
            ax.annotate(
                f"{n.split('x')[0]} px", (xi, yi), textcoords="offset points", xytext=(5, 4), fontsize=8
            )
        front = [
            (xi, yi) for xi, yi, on in zip(x, y, pareto(list(zip(x, y, strict=True))), strict=True) if on
        ]
        ax.step(*zip(*front, strict=True), where="post", color="grey", linestyle="--", label="Pareto front")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    for width, colour in colours.items():
        axes[0].plot([], [], "o", color=colour, label=f"width {width:g}")
    axes[0].set_ylabel("AFW NME (mean ± std over seeds)")
    axes[0].legend(fontsize=8)
    fig.suptitle("PFLD input size x width, 6 epochs on the shared data")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweeps", nargs="*", type=Path, help="size_width sweep folders")
    parser.add_argument("--rescore", action="store_true", help="score the turned faces of new runs first")
    parser.add_argument("--cells", type=Path, default=ROOT / "docs" / "size_width.json")
    parser.add_argument("--costs", type=Path, default=ROOT / "docs" / "cost_grid_xeon_2core.json")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "ablations.md")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "size_width_pareto.png")
    args = parser.parse_args()
    if args.rescore:
        rescore_sweeps(args.sweeps)
    cells = json.loads(args.cells.read_text())["cells"] if args.cells.is_file() else {}
    cells.update(measured_cells(args.sweeps))
    costs = {
        f"{r['input']}x{r['width']:g}": r
        for r in json.loads(args.costs.read_text())["rows"]
        if not r["with_pose"]
    }
    missing = sorted(set(cells) - set(costs))
    if missing:
        raise SystemExit(f"{args.costs}: no cost for cells {missing}; run scripts/cost_grid.py for them")
    args.cells.write_text(json.dumps({"cells": cells}, indent=1) + "\n")
    plot(cells, costs, args.figure)
    section = table(cells, costs) + f"\n\n![NME against cost]({args.figure.relative_to(args.doc.parent)})"
    write_section(args.doc, "size_width", section)
    print(section)
    print(f"\nwrote {args.doc}, {args.cells} and {args.figure}")


if __name__ == "__main__":
    main()
