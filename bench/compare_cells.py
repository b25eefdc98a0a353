#!/usr/bin/env python3
"""Compare the cells two bench folders have in common (same cell id), e.g. an fp32 grid and the
same grid rerun with `precision = "bf16"`.

    python3 bench/compare_cells.py bench/results/lmbff-k16 bench/results/bf16-check
    python3 bench/compare_cells.py A B --tasks qnli --changed

Prints a markdown table with one row per (task, K, variant), i.e. per cell id without its split
seed: the main test metric x100 at the centroid (the one `summary.md` uses), mean (std) over
split seeds in each folder, the largest per-seed difference and how many cells chose the same
checkpoint step. `--changed` adds one row per cell that chose another checkpoint step in B, or
whose score moved by at least `--min-diff` points (default 1): both steps, both dev selection
scores and both test scores. `--tasks` keeps only the named tasks. Standard library only.
"""

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

METRIC = {"cola": "mcc", "mrpc": "f1", "qqp": "f1", "stsb": "pearson"}


def metric_name(task):
    """The metric a task's cells are scored and selected with (the benchmark's main one)."""
    return METRIC.get(task, "accuracy")


def finished(folder):
    cells = {}
    for res in sorted(Path(folder, "cells").glob("*/results.json")):
        cells[res.parent.name] = json.loads(res.read_text())
    return cells


def main_score(r):
    key = "test_matched" if "test_matched" in r else "test"
    return 100.0 * r[key]["centroid"][metric_name(r["task"])]


def mean_std(v):
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def dev_score(r):
    """The dev metric the checkpoint was chosen with (x100), as `results.json` records it."""
    sel = r["dev_selection"]
    return 100.0 * sel[metric_name(r["task"])]


def print_changed(a, b, common, min_diff):
    rows = []
    for cid in common:
        x, y = a[cid], b[cid]
        diff = main_score(y) - main_score(x)
        if x["best_step"] != y["best_step"] or abs(diff) >= min_diff:
            rows.append((cid, x, y, diff))
    print(f"\nCells that chose another step, or moved by {min_diff:g} or more points: {len(rows)}\n")
    if not rows:
        return
    print("| cell | step A | step B | dev A | dev B | test A | test B | B - A |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for cid, x, y, diff in rows:
        print(
            f"| {cid} | {x['best_step']} | {y['best_step']} | {dev_score(x):.2f} | {dev_score(y):.2f} "
            f"| {main_score(x):.2f} | {main_score(y):.2f} | {diff:+.2f} |"
        )


def main():
    ap = argparse.ArgumentParser(description="Compare the finished cells two bench folders share.")
    ap.add_argument("folder_a")
    ap.add_argument("folder_b")
    ap.add_argument("--tasks", help="comma-separated task names to keep (default: all)")
    ap.add_argument("--changed", action="store_true", help="also list the cells that changed")
    ap.add_argument("--min-diff", type=float, default=1.0, metavar="POINTS")
    args = ap.parse_args()
    a, b = finished(args.folder_a), finished(args.folder_b)
    common = sorted(a.keys() & b.keys())
    if args.tasks:
        keep = {t.strip().lower() for t in args.tasks.split(",")}
        common = [cid for cid in common if a[cid]["task"] in keep]
    # `<task>-k<K>-split<S>-<variant>`: a group is every split seed of one task, K and variant
    # (two variants of one method, as in the ablations, stay apart).
    groups = defaultdict(list)
    for cid in common:
        groups[re.sub(r"-split\d+-", " ", cid, count=1)].append((a[cid], b[cid]))
    if not groups:
        sys.exit("no finished cell is in both folders" + (f" for --tasks {args.tasks}" if args.tasks else ""))
    print(f"A = {args.folder_a}, B = {args.folder_b}\n")
    print("| task (metric) | cell | cells | A | B | largest per-seed difference | same best step |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for group, pairs in sorted(groups.items()):
        task = pairs[0][0]["task"]
        sa = [main_score(x) for x, _ in pairs]
        sb = [main_score(y) for _, y in pairs]
        diff = max(abs(x - y) for x, y in zip(sa, sb))
        same = sum(x["best_step"] == y["best_step"] for x, y in pairs)
        (ma, da), (mb, db) = mean_std(sa), mean_std(sb)
        metric = metric_name(task)
        print(
            f"| {task} ({metric}) | {group} | {len(pairs)} | {ma:.1f} ({da:.1f}) | {mb:.1f} ({db:.1f}) "
            f"| {diff:.2f} | {same} of {len(pairs)} |"
        )
    if args.changed:
        print_changed(a, b, common, args.min_diff)


if __name__ == "__main__":
    main()
