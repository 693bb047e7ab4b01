#!/usr/bin/env python3
"""Writes the fuzzer's seed corpus: every pipeline of the oracle corpus and the example job
files, one file each, into fuzz/corpus/validate_explain/."""
import glob, json, os

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "corpus", "validate_explain")
os.makedirs(out, exist_ok=True)
n = 0
for path in sorted(glob.glob(os.path.join(here, "..", "tests", "oracle", "cases", "*.json"))):
    for case in json.load(open(path)):
        with open(os.path.join(out, f"case-{n:04d}.json"), "w") as f:
            json.dump(case["pipeline"], f)
        n += 1
for path in sorted(glob.glob(os.path.join(here, "..", "examples", "**", "*.json"), recursive=True)):
    with open(os.path.join(out, f"job-{n:04d}.json"), "w") as f:
        f.write(open(path).read())
    n += 1
print(f"{n} seeds in {out}")
