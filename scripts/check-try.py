#!/usr/bin/env python3
"""Every `try?` in Sources/ says why its failure may be ignored.

A `try?` passes when its line has a `//` comment, or when a `//` comment line sits directly above its statement
(up to four lines up, stopping at a blank line or a line that ends a block). Prints each bare `try?` and exits 1
when there is any.
"""
import os
import re
import sys

TRY_OPTIONAL = re.compile(r"(?<![A-Za-z_])try\?")
STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')


def bare_sites(root):
    for directory, _, files in os.walk(root):
        for name in sorted(files):
            if not name.endswith(".swift"):
                continue
            path = os.path.join(directory, name)
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")
            for index, line in enumerate(lines):
                # Strings first: a `//` in "nats://…" is not a comment.
                bare = STRING_LITERAL.sub('""', line)
                code = bare.split("//")[0]
                if not TRY_OPTIONAL.search(code) or "//" in bare:
                    continue
                if not explained(lines, index):
                    yield f"{path}:{index + 1}: {line.strip()}"


def explained(lines, index):
    for above in range(index - 1, max(index - 5, -1), -1):
        text = lines[above].strip()
        if text.startswith("//"):
            return True
        if not text or text.endswith("{") or text.endswith("}"):
            return False
    return False


if __name__ == "__main__":
    sites = list(bare_sites(sys.argv[1] if len(sys.argv) > 1 else "Sources"))
    for site in sites:
        print(site)
    if sites:
        print(f"{len(sites)} try? without a reason: say why the failure may be ignored, or handle it", file=sys.stderr)
        sys.exit(1)
