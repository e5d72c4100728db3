#!/usr/bin/python3
"""Plots a crius-bench summary.json: latencies and memory side by side for the two
runtimes, and the ratio A/B per metric (below 1 means A is faster or smaller).

Usage: plot.py SUMMARY_JSON OUT_PNG   (needs python3-matplotlib)
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def bars(ax, rows, a, b, unit, title):
    rows = [r for r in rows if r["unit"] == unit and (r["a"] is not None or r["b"] is not None)]
    labels = [r["label"].strip() for r in rows]
    ys = range(len(rows))
    h = 0.4
    ax.barh([y - h / 2 for y in ys], [r["a"] or 0 for r in rows], h, label=a, color="#1f77b4")
    ax.barh([y + h / 2 for y in ys], [r["b"] or 0 for r in rows], h, label=b, color="#ff7f0e")
    ax.set_yticks(list(ys))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    if unit == "ms":
        ax.set_xscale("log")
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)


def ratios(ax, rows, a, b):
    rows = [r for r in rows if r["ratio"] is not None and r["unit"] in ("ms", "MiB")]
    labels = [r["label"].strip() for r in rows]
    values = [r["ratio"] for r in rows]
    colors = ["#2ca02c" if v <= 1 else "#d62728" for v in values]
    ax.barh(range(len(rows)), values, color=colors)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(list(range(len(rows))))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"{a} / {b} (log; < 1: {a} lower)")
    ax.set_title("ratio", fontsize=10)
    ax.grid(axis="x", alpha=0.3)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        summary = json.load(f)
    a, b, rows = summary["a"], summary["b"], summary["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(20, 9), gridspec_kw={"width_ratios": [3, 2, 2]})
    bars(axes[0], rows, a, b, "ms", "latency (ms, log scale)")
    bars(axes[1], rows, a, b, "MiB", "memory (MiB)")
    ratios(axes[2], rows, a, b)
    versions = "; ".join(f'{r["name"]}: {r["runtime_name"]} {r["runtime_version"]}' for r in summary["runs"])
    fig.suptitle(f"crius-bench: {a} vs {b} ({versions})", fontsize=11)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
