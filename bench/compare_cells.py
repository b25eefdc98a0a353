#!/usr/bin/env python3
"""Compare the cells two bench folders have in common (same cell id), e.g. an fp32 grid and the
same grid rerun with `precision = "bf16"`.

    python3 bench/compare_cells.py bench/results/lmbff-k16 bench/results/bf16-check

Prints a markdown table per (task, K, variant), i.e. per cell id without its split seed: the main test metric x100 at the centroid (the
one `summary.md` uses), mean (std) over split seeds in each folder, the largest per-seed
difference and how many cells chose the same checkpoint step. Standard library only.
"""

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

METRIC = {"cola": "mcc", "mrpc": "f1", "qqp": "f1", "stsb": "pearson"}


def finished(folder):
    cells = {}
    for res in sorted(Path(folder, "cells").glob("*/results.json")):
        cells[res.parent.name] = json.loads(res.read_text())
    return cells


def main_score(r):
    key = "test_matched" if "test_matched" in r else "test"
    return 100.0 * r[key]["centroid"][METRIC.get(r["task"], "accuracy")]


def mean_std(v):
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def main():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} FOLDER_A FOLDER_B")
    a, b = finished(sys.argv[1]), finished(sys.argv[2])
    # `<task>-k<K>-split<S>-<variant>`: a group is every split seed of one task, K and variant
    # (two variants of one method, as in the ablations, stay apart).
    groups = defaultdict(list)
    for cid in sorted(a.keys() & b.keys()):
        groups[re.sub(r"-split\d+-", " ", cid, count=1)].append((a[cid], b[cid]))
    if not groups:
        sys.exit("no finished cell is in both folders")
    print(f"A = {sys.argv[1]}, B = {sys.argv[2]}\n")
    print("| task (metric) | cell | cells | A | B | largest per-seed difference | same best step |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for group, pairs in sorted(groups.items()):
        task = pairs[0][0]["task"]
        sa = [main_score(x) for x, _ in pairs]
        sb = [main_score(y) for _, y in pairs]
        diff = max(abs(x - y) for x, y in zip(sa, sb))
        same = sum(x["best_step"] == y["best_step"] for x, y in pairs)
        (ma, da), (mb, db) = mean_std(sa), mean_std(sb)
        metric = METRIC.get(task, "accuracy")
        print(
            f"| {task} ({metric}) | {group} | {len(pairs)} | {ma:.1f} ({da:.1f}) | {mb:.1f} ({db:.1f}) "
            f"| {diff:.2f} | {same} of {len(pairs)} |"
        )


if __name__ == "__main__":
    main()
