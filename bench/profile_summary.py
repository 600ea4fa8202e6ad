"""Where a py-spy profile's time goes: samples per thread, and functions by inclusive share.

Reads the folded stacks of ``py-spy record --threads -f raw`` (what
``bench/relay_throughput.py --profile x.txt`` writes): one line per distinct stack,
``thread (id): name;frame;frame;... count``. A function's inclusive share counts every sample
with it anywhere on the stack (once per sample, however deep it recurses); its own share
counts the samples where it is the innermost frame.

    .venv/bin/python bench/profile_summary.py bench/results/relay_profile.txt --top 40
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^thread \((?P<tid>[^)]*)\): (?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def function_of(frame: str) -> str:
    """``name (file)`` without the line number, so a function's lines count as one."""
    match = _FRAME.match(frame)
    return f"{match['name']} ({match['file']})" if match else frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--thread", help="only threads whose name contains this")
    args = parser.parse_args()
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in args.profile.read_text().splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        thread, *frames = match["stack"].split(";")
        count = int(match["count"])
        threads[thread] += count
        if args.thread and args.thread not in thread:
            continue
        total += count
        for function in {function_of(f) for f in frames}:
            inclusive[function] += count
        if frames:
            own[function_of(frames[-1])] += count
    every = sum(threads.values())
    print(f"{every} samples; per thread:")
    for thread, count in threads.most_common():
        print(f"  {100 * count / every:5.1f}%  {count:>6}  {thread}")
    scope = f"threads matching {args.thread!r}" if args.thread else "all threads"
    print(f"\ninclusive, % of the {total} samples of {scope}:")
    for function, count in inclusive.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {function}")
    print(f"\nown (innermost frame), % of {scope}:")
    for function, count in own.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {function}")


if __name__ == "__main__":
    main()
