#!/usr/bin/env python3
"""Reads the outputs of scripts/bench-compare.sh and prints every row both sides printed: the medians of its
figures on each side and HEAD ÷ baseline. A row is a line that ends in numbers; rows are matched by the text
before them."""
import glob
import os
import re
import statistics
import sys

NUMBER = re.compile(r"^-?\d[\d,]*(\.\d+)?x?$")
# A table row whose figures carry units ("8.8 (  10.6)  ms"): the label ends where a column (two spaces or more)
# starts with a number, and every number after it is a figure.
COLUMN = re.compile(r"\s{2,}[-+(]?\d")
FIGURE = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?")


def rows(path):
    """Each line that ends in numbers, or a table row of figures with units: its label and its numbers."""
    found = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            tokens = line.split()
            numbers = []
            while tokens and NUMBER.match(tokens[-1]):
                numbers.insert(0, float(tokens.pop().rstrip("x").replace(",", "")))
            label = " ".join(tokens)
            if not numbers:
                column = COLUMN.search(line.rstrip())
                if column:
                    label = " ".join(line[: column.start()].split())
                    numbers = [float(n.replace(",", "")) for n in FIGURE.findall(line[column.start() :])]
            if label and numbers:
                found.setdefault(label, numbers)
    return found


def medians(paths):
    runs = [rows(p) for p in paths]
    labels = [label for label in runs[0] if all(label in r for r in runs)] if runs else []
    return {
        label: [statistics.median(r[label][i] for r in runs) for i in range(min(len(r[label]) for r in runs))]
        for label in labels
    }


def main():
    base, directory = sys.argv[1], sys.argv[2]
    before = medians(sorted(glob.glob(os.path.join(directory, "base-*.txt"))))
    after = medians(sorted(glob.glob(os.path.join(directory, "head-*.txt"))))
    rounds = len(glob.glob(os.path.join(directory, "head-*.txt")))
    print(f"medians of {rounds} rounds; baseline {base} | HEAD | HEAD ÷ baseline, figure by figure")
    for label, old in before.items():
        new = after.get(label)
        if new is None:
            continue
        cells = []
        for a, b in zip(old, new):
            ratio = f"{b / a:.2f}x" if a else "-"
            cells.append(f"{a:g} | {b:g} | {ratio}")
        print(f"  {label[:60]:<60} " + "   ".join(cells))


if __name__ == "__main__":
    main()
