"""Incremental builds at size: python -m eval.bench_incremental [--docs 10000].

Writes a folder of ``--docs`` small files (SQuAD dev sentences, one per file, so every file is a real
document), builds its index with ``python -m index build``, then edits one file and builds again, and
touches another (new mtime, same bytes) and builds again. Each build runs as a user runs it: a fresh
process, models loaded from their packages. Prints the wall times and how many documents each build
embedded, and writes JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .reader import SQUAD_DEV as DEFAULT_DATA

_EMBEDDED = re.compile(r"(\d+) to embed")


def write_corpus(folder: Path, n_docs: int, data: Path = DEFAULT_DATA) -> int:
    """``n_docs`` files of one SQuAD sentence each (under its article's title), in 100 sub-folders."""
    squad = json.loads(data.read_text(encoding="utf-8"))
    n = 0
    for article in squad["data"]:
        title = article["title"].replace("_", " ")
        for paragraph in article["paragraphs"]:
            for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", paragraph["context"]):
                if n == n_docs:
                    return n
                path = folder / f"part-{n % 100:02d}" / f"doc-{n:05d}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"{title}\n\n{sentence}\n", encoding="utf-8")
                n += 1
    return n


def build(source: Path, out: Path, backend: list[str]) -> dict:
    """One ``python -m index build`` in a fresh process: wall seconds and documents embedded."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "index", "build", "--source", str(source), "--out", str(out), *backend],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"index build failed:\n{result.stderr[-2000:]}")
    found = _EMBEDDED.search(result.stderr)
    return {"seconds": round(seconds, 2), "embedded": int(found.group(1)) if found else 0}


def run(n_docs: int, workdir: Path, *, milvus: bool = False) -> dict:
    source, out = workdir / "docs", workdir / "index"
    backend = (
        ["--backend", "milvus", "--uri", str(workdir / "milvus.db")] if milvus else ["--backend", "files"]
    )
    written = write_corpus(source, n_docs)
    full = build(source, out, backend)
    edited = source / "part-42" / "doc-00042.txt"
    text = edited.read_text(encoding="utf-8")
    edited.write_text(text + "This sentence was added later.\n", encoding="utf-8")
    one_edit = build(source, out, backend)
    touched = source / "part-07" / "doc-00007.txt"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    one_touch = build(source, out, backend)
    nothing = build(source, out, backend)
    return {
        "documents": written,
        "full_build": full,
        "after_editing_one_file": one_edit,
        "after_touching_one_file": one_touch,
        "nothing_changed": nothing,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_incremental", description=__doc__)
    parser.add_argument("--docs", type=int, default=10_000, help="files in the corpus (default 10,000)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--backend", choices=("files", "milvus"), default="files", help="where the index lives (milvus: Lite)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rag-incremental-") as tmp:
        report = run(args.docs, Path(tmp), milvus=args.backend == "milvus")
    print(
        f"incremental builds of {report['documents']:,} files (each a fresh `python -m index build`, "
        f"backend {args.backend})"
    )
    for key in ("full_build", "after_editing_one_file", "after_touching_one_file", "nothing_changed"):
        r = report[key]
        print(f"  {key.replace('_', ' '):26} {r['seconds']:8.1f} s   {r['embedded']:,} documents embedded")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
