"""python -m rag "question" - answer a question from the documents, with its sources."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap

from . import GeneratedAnswer, LLMSettings, RagError, ask, ask_stream
from .config import get_llm_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rag", description=__doc__)
    parser.add_argument("question", nargs="+", help="the question (quotes optional)")
    parser.add_argument("-k", type=int, default=5, help="passages to retrieve (default 5)")
    parser.add_argument("--json", action="store_true", help="print the Answer as JSON")
    add_llm_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("rag").setLevel(logging.INFO)
    question = " ".join(args.question)
    try:
        llm = llm_settings(args)
        if llm is not None:
            return _generated(question, args, llm)
        answer = ask(question, k=args.k)
    except (RagError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answer.to_dict(), indent=1, ensure_ascii=False))
        return 0
    print(answer.text)
    _print_sources(answer.citations, abstained=answer.abstained)
    return 0


def add_llm_options(parser: argparse.ArgumentParser, *, switch_off: bool = True) -> None:
    """The language model flags, shared by ``python -m rag``, ``python -m ui`` and ``python -m eval``
    (which has ``--llm`` to switch the model on rather than ``--no-llm`` to switch it off)."""
    group = parser.add_argument_group(
        "generated answers (optional; default: the RAG_LLM_* environment variables, else extractive only)"
    )
    group.add_argument(
        "--llm-base-url", metavar="URL", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1"
    )
    group.add_argument("--llm-model", metavar="NAME", help="the model to ask (default: the server's first)")
    group.add_argument(
        "--llm-api-key", metavar="KEY", help="its API key (prefer RAG_LLM_API_KEY: flags show in ps)"
    )
    group.add_argument(
        "--llm-timeout", type=float, metavar="S", help="seconds an answer may take (default 60)"
    )
    if switch_off:
        group.add_argument(
            "--no-llm", action="store_true", help="extractive answers even if a server is configured"
        )


def llm_settings(args: argparse.Namespace) -> LLMSettings | None:
    """The server the flags and the environment name, or None. Raises ValueError for bad values."""
    if getattr(args, "no_llm", False):
        return None
    return get_llm_settings(
        base_url=args.llm_base_url, model=args.llm_model, api_key=args.llm_api_key, timeout=args.llm_timeout
    )


def _generated(question: str, args: argparse.Namespace, llm: LLMSettings) -> int:
    """Stream the model's answer to the terminal, then the extracted answer, any notice, the sources."""
    generation = ask_stream(question, k=args.k, llm=llm)
    streamed = False
    for delta in generation:
        if not args.json:
            print(delta, end="", flush=True)
            streamed = True
    result: GeneratedAnswer = generation.result()
    if args.json:
        print(json.dumps(result.to_dict(), indent=1, ensure_ascii=False))
        return 0
    if streamed:
        print()  # after a failure part-way, the notice below says the extracted answer replaces it
    if result.generated:
        if result.short_answer and not result.extracted.abstained:
            print(f"\nExtracted answer: {result.short_answer} [1]")
    for notice in result.notices:
        print(f"\nNote: {notice}")
    if not result.generated:
        print(f"\n{result.extracted.text}" if result.notices else result.extracted.text)
    _print_sources(result.citations, abstained=result.extracted.abstained)
    return 0


def _print_sources(citations, *, abstained: bool) -> None:
    print()
    print("Related passages:" if abstained else "Sources:")
    for n, c in enumerate(citations, 1):
        page = f", page {c.page}" if c.page else ""
        where = f"{c.source}{page}, characters {c.start}-{c.end}" + (f", {c.date}" if c.date else "")
        print(f"[{n}] {c.title} ({where}; score {c.score:.3f})")
        print(textwrap.indent(textwrap.shorten(c.text, 240, placeholder=" …"), "    "))


if __name__ == "__main__":
    sys.exit(main())
