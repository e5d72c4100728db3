#!/usr/bin/python3
"""Plots a crius-bench summary.json: for each table, latencies and memory side by side for
its runs, and the ratio A/B of each compared pair per metric (below 1: A is faster or
smaller). The first table goes to OUT_PNG, table N (N >= 2) to OUT-N.png.

Usage: plot.py SUMMARY_JSON OUT_PNG   (needs python3-matplotlib)
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def bars(ax, rows, columns, unit, title):
    rows = [r for r in rows if r["unit"] == unit and any(v is not None for v in r["values"])]
    ys = range(len(rows))
    h = 0.8 / max(len(columns), 1)
    for i, name in enumerate(columns):
        offset = (i - (len(columns) - 1) / 2) * h
        ax.barh([y + offset for y in ys], [r["values"][i] or 0 for r in rows], h,
                label=name, color=COLORS[i % len(COLORS)])
    ax.set_yticks(list(ys))
    ax.set_yticklabels([r["label"].strip() for r in rows], fontsize=7)
    ax.invert_yaxis()
    if unit == "ms":
        ax.set_xscale("log")
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)


def ratios(ax, rows, pairs):
    rows = [r for r in rows if r["unit"] in ("ms", "MiB") and any(x is not None for x in r["ratios"])]
    ys = range(len(rows))
    h = 0.8 / max(len(pairs), 1)
    for i, pair in enumerate(pairs):
        offset = (i - (len(pairs) - 1) / 2) * h
        ax.barh([y + offset for y in ys], [r["ratios"][i] or 0 for r in rows], h,
                label=f'{pair["a"]} / {pair["b"]}', color=COLORS[(2 * i) % len(COLORS)])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([r["label"].strip() for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ratio (log; < 1: the first lower)")
    ax.set_title("ratio", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        summary = json.load(f)
    runs = {r["name"]: r for r in summary["runs"]}
    for n, table in enumerate(summary["tables"], start=1):
        columns, rows = table["columns"], table["rows"]
        fig, axes = plt.subplots(1, 3, figsize=(22, 9), gridspec_kw={"width_ratios": [3, 2, 2]})
        bars(axes[0], rows, columns, "ms", "latency (ms, log scale)")
        bars(axes[1], rows, columns, "MiB", "memory (MiB)")
        ratios(axes[2], rows, table["pairs"])
        versions = "; ".join(
            f'{c}: {runs[c]["runtime_name"]} {runs[c]["runtime_version"]}' for c in columns if c in runs
        )
        fig.suptitle(f"crius-bench ({versions})", fontsize=10)
        fig.tight_layout()
        out = sys.argv[2] if n == 1 else sys.argv[2].removesuffix(".png") + f"-{n}.png"
        fig.savefig(out, dpi=110)
        print(out)


if __name__ == "__main__":
    main()
