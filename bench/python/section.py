#!/usr/bin/python3
"""The marked sections of bench/RESULTS.md: each benchmark script owns one block,
<!-- NAME: begin --> ... <!-- NAME: end -->, and replaces it alone (appended the first
time), so that every script's table survives the others' runs.

Usage: section.py NAME FILE [--results bench/RESULTS.md]   (FILE holds the block, markers included)
"""
import os
import re
import sys

PATTERN = r"<!-- ([a-z_]+): begin -->.*?<!-- \1: end -->"


def blocks(text):
    """Every marked block of a text, in order."""
    return [m.group(0) for m in re.finditer(PATTERN, text, flags=re.S)]


def replace(results, name, block):
    """Puts `block` in place of the block NAME of `results` (appended when absent); atomic."""
    block = block.rstrip("\n")
    try:
        text = open(results).read()
    except FileNotFoundError:
        text = ""
    marked = re.compile(rf"<!-- {name}: begin -->.*?<!-- {name}: end -->", flags=re.S)
    if marked.search(text):
        text = marked.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(results + ".tmp", "w") as f:
        f.write(text)
    os.replace(results + ".tmp", results)


if __name__ == "__main__":
    args = sys.argv[1:]
    results = "bench/RESULTS.md"
    if "--results" in args:
        i = args.index("--results")
        results = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        sys.exit("usage: section.py NAME FILE [--results bench/RESULTS.md]")
    replace(results, args[0], open(args[1]).read())
