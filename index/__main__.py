"""python -m index build|info - build, update or describe the index."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from rag import RagError, open_index
from rag.config import get_settings
from rag.store import describe


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m index", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the index, or update it for added, changed or removed files")
    build.add_argument(
        "--source",
        type=Path,
        default=settings.source_dir,
        help=f"folder of .txt .md .html .htm .pdf documents (default: {settings.source_dir})",
    )
    build.add_argument(
        "--out",
        type=Path,
        default=settings.index_dir,
        help=f"index directory (default: {settings.index_dir})",
    )
    build.add_argument(
        "--multilingual",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="give each passage a second vector, for questions in other languages than English (default: "
        "as the index has it; on for a new index). --no-multilingual saves its build time on a large "
        "English-only corpus; switching rebuilds the index",
    )
    info = sub.add_parser("info", help="print the manifest of the index")
    info.add_argument("--out", type=Path, default=settings.index_dir, help="index directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("rag").setLevel(logging.INFO)
    try:
        if args.command == "build":
            started = time.perf_counter()
            index = open_index(
                source=args.source, index_dir=args.out, strict=True, multilingual=args.multilingual
            )
            print(
                f"index at {args.out}: {index.num_documents} documents, {index.num_passages} passages "
                f"({time.perf_counter() - started:.1f} s)"
            )
        else:
            print(json.dumps(describe(args.out), indent=1, ensure_ascii=False))
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the index in use at {args.out} is unchanged; run the same command again to "
            "resume (the finished batches are kept)",
            file=sys.stderr,
        )
        return 130
    except RagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. --out is a file, or a folder we may not write
        print(f"error: cannot write the index at {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
