"""python -m index build|info - build, update or describe the index."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from rag import RagError, open_index
from rag.config import MilvusSettings, get_settings
from rag.store import read_manifest


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
    _milvus_options(build, settings)
    info = sub.add_parser("info", help="print the manifest of the index")
    info.add_argument("--out", type=Path, default=settings.index_dir, help="index directory")
    _milvus_options(info, settings)
    args = parser.parse_args(argv)
    try:
        milvus = _milvus(args, settings)
    except ValueError as e:
        parser.error(str(e))
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("rag").setLevel(logging.INFO)
    try:
        if args.command == "build":
            started = time.perf_counter()
            index = open_index(
                source=args.source,
                index_dir=args.out,
                strict=True,
                multilingual=args.multilingual,
                milvus=milvus,
            )
            where = args.out if milvus is None else milvus.location
            print(
                f"index at {where}: {index.num_documents} documents, {index.num_passages} passages "
                f"({time.perf_counter() - started:.1f} s)"
            )
        elif milvus is not None:
            from rag.milvus_target import MilvusTarget

            manifest = MilvusTarget(milvus).load(settings.chunk).manifest
            print(json.dumps(describe_manifest(manifest), indent=1, ensure_ascii=False))
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


def _milvus_options(parser: argparse.ArgumentParser, settings) -> None:
    env = settings.milvus
    parser.add_argument(
        "--backend",
        choices=("files", "milvus"),
        default="milvus" if env is not None else "files",
        help="where the index lives: files in --out (FAISS and bm25s; the default), or Milvus at --uri, "
        "with --out holding only the build's work in progress (default: milvus when RAG_INDEX_URI is set)",
    )
    parser.add_argument(
        "--uri",
        default=env.uri if env is not None else None,
        help="Milvus: a file path for Milvus Lite, or http://host:19530 for a server "
        "(default: RAG_INDEX_URI)",
    )
    parser.add_argument(
        "--collection",
        default=env.collection if env is not None else "rag",
        help="Milvus: the index's name, which its builds' collections are named after "
        "(default: RAG_INDEX_COLLECTION, else rag)",
    )
    parser.add_argument(
        "--token",
        default=env.token if env is not None else "",
        help="Milvus server: user:password or an API key (default: RAG_INDEX_TOKEN)",
    )
    parser.add_argument(
        "--database",
        default=env.database if env is not None else "",
        help="Milvus server: the database (default: RAG_INDEX_DATABASE, else the server's default)",
    )


def _milvus(args, settings) -> MilvusSettings | None:
    if args.backend != "milvus":
        return None
    if not args.uri:
        raise ValueError("--backend milvus needs --uri (a file path for Milvus Lite, or http://host:19530)")
    return MilvusSettings(uri=args.uri, collection=args.collection, token=args.token, database=args.database)


def describe(index_dir: Path) -> dict:
    """What ``python -m index info`` shows of the index at ``index_dir``: its manifest, with counts in place
    of the per-document and per-file records, and why each skipped file was skipped."""
    _, manifest = read_manifest(index_dir)
    return describe_manifest(manifest)


def describe_manifest(manifest: dict) -> dict:
    """A manifest with counts in place of its per-document and per-file records."""
    skipped = manifest.get("skipped") or {}
    return {
        **manifest,
        "documents": f"{len(manifest['documents'])} documents",
        "files": f"{len(manifest.get('files') or {})} files, each with its sha256",
        "skipped": {doc_id: info.get("reason") for doc_id, info in skipped.items()},
    }


if __name__ == "__main__":
    sys.exit(main())
