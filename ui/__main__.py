"""python -m ui - serve the chat on this machine, answering from a folder of documents."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rag import RagError
from rag.__main__ import add_llm_options, llm_settings
from rag.config import get_settings

from .guard import LOOPBACK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ui", description=__doc__)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument(
        "--source",
        type=Path,
        help="folder of .txt .md .html .htm .pdf documents (default: RAG_SOURCE_DIR or seeds/)",
    )
    parser.add_argument(
        "--shared-uploads",
        action="store_true",
        help="documents uploaded from the page are kept in <index>/uploads, for every visitor (and python -m"
        " rag) to see and remove, until removed (default: each browser session's own, dropped when it ends)",
    )
    parser.add_argument(
        "--origin",
        action="append",
        default=[],
        metavar="URL",
        help="also accept requests from pages at this address (a reverse proxy's, https://chat.example.org);"
        " requests from other web pages are refused. Repeatable",
    )
    add_llm_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("rag").setLevel(logging.INFO)
    try:
        llm = llm_settings(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    milvus = get_settings().milvus
    if milvus is not None and args.shared_uploads:
        print(
            "error: --shared-uploads needs an index of local files; an index in Milvus (RAG_INDEX_URI) is "
            "written only by python -m index build, and uploads stay private to each visitor",
            file=sys.stderr,
        )
        return 2
    print("Loading gradio…", flush=True)
    from .app import Library, Sessions, create_app, launch_options

    library = Library(source=args.source)
    if milvus is not None:
        print(f"Opening the index in Milvus at {milvus.location}…", flush=True)
    else:
        print(f"Opening the index of {library.source} in {library.index_dir}…", flush=True)
    try:
        library.load(progress=True)
        library.warm_up()
    except RagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(library.status(), flush=True)
    if llm is not None:
        print(f"Answers are written by {llm.model or 'the first model'} at {llm.base_url}", flush=True)
    sessions = None
    if args.shared_uploads:
        print(f"Uploads are shared by every visitor: {library.uploads_dir}", flush=True)
    else:
        sessions = Sessions(library)
        sessions.clear()  # the session folders an earlier server left behind
    # a page other machines can reach must not let them make this one call any URL they type
    editable = args.host in LOOPBACK
    if not editable:
        print("The language model settings are fixed for visitors (the page is served beyond this machine)")
    demo = create_app(
        library, llm=llm, llm_editable=editable, shared_uploads=args.shared_uploads, sessions=sessions
    )
    try:
        _, url, _ = demo.launch(
            server_name=args.host,
            server_port=args.port,
            prevent_thread_lock=True,
            quiet=True,
            **launch_options(host=args.host, origins=tuple(args.origin)),
        )
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port} ({e}); try --port", file=sys.stderr)
        return 2
    print(f"Chat ready at {url} - press Ctrl+C to stop", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
