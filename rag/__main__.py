"""python -m rag "question" - answer a question from the documents, with its sources."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
from dataclasses import asdict

from . import RagError, ask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rag", description=__doc__)
    parser.add_argument("question", nargs="+", help="the question (quotes optional)")
    parser.add_argument("-k", type=int, default=5, help="passages to retrieve (default 5)")
    parser.add_argument("--json", action="store_true", help="print the Answer as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("rag").setLevel(logging.INFO)
    try:
        answer = ask(" ".join(args.question), k=args.k)
    except (RagError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(asdict(answer), indent=1, ensure_ascii=False))
        return 0
    print(answer.text)
    print()
    print("Related passages:" if answer.abstained else "Sources:")
    for n, c in enumerate(answer.citations, 1):
        page = f", page {c.page}" if c.page else ""
        where = f"{c.source}{page}, characters {c.start}-{c.end}" + (f", {c.date}" if c.date else "")
        print(f"[{n}] {c.title} ({where}; score {c.score:.3f})")
        print(textwrap.indent(textwrap.shorten(c.text, 240, placeholder=" …"), "    "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
