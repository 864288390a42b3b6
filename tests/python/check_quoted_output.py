#!/usr/bin/python3
"""Checks that a script's output holds the lines its comments quote.

A quoted line is a comment of the form `#   text` (a hash and three spaces). It matches an
output line that starts with the same words and punctuation, every number within
--tolerance of the quoted one (numbers differ a little between CPUs; words never do).

    check_quoted_output.py SCRIPT OUTPUT [--tolerance 2]
"""
import argparse
import re
import sys

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def split(line):
    """A line's skeleton (numbers replaced by #, spaces collapsed) and its numbers."""
    text = " ".join(line.split())
    return NUMBER.sub("#", text), [float(n) for n in NUMBER.findall(text)]


def matches(quoted, line, tolerance):
    q_skeleton, q_numbers = split(quoted)
    skeleton, numbers = split(line)
    if not skeleton.startswith(q_skeleton):
        return False
    return all(abs(a - b) <= tolerance for a, b in zip(q_numbers, numbers))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("script")
    ap.add_argument("output")
    ap.add_argument("--tolerance", type=float, default=2.0)
    a = ap.parse_args()
    quoted = [line[4:].rstrip() for line in open(a.script, encoding="utf-8") if line.startswith("#   ")]
    output = [line.rstrip() for line in open(a.output, encoding="utf-8")]
    if not quoted:
        sys.exit(f"{a.script}: no quoted output lines (`#   ...`)")
    missing = [q for q in quoted if not any(matches(q, line, a.tolerance) for line in output)]
    for q in quoted:
        print(("MISSING " if q in missing else "ok      ") + q)
    if missing:
        sys.exit(f"{len(missing)} of {len(quoted)} quoted lines not in the output (tolerance {a.tolerance})")


if __name__ == "__main__":
    main()
