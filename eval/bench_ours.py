"""The benchmark's adapter to this project: every call into ``rag`` that ``python -m eval.bench`` makes is
in this module. rag's internals (store, embedding, chunking, retrieval, answering) are being rewritten;
when they change, this is the only code of the benchmark to update."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from eval.bench_corpus import BenchDoc


def ours_open(docs: list[BenchDoc], index_dir: Path, *, multilingual: bool | None = None, milvus=None):
    """Build the index of ``docs`` in ``index_dir`` (or in the Milvus Lite file ``milvus``), or load it when
    it is already there (as it was built: ``multilingual`` None)."""
    import rag
    from rag.config import MilvusSettings
    from rag.documents import make_document

    documents = [make_document(d.id, d.text) for d in docs]
    where = MilvusSettings(uri=str(milvus), collection="bench") if milvus is not None else None
    return rag.open_index(
        documents=documents, index_dir=index_dir, progress=False, multilingual=multilingual, milvus=where
    )


def ours_num_chunks(index) -> int:
    return index.num_passages


def ours_retrieve(index, question: str, k: int) -> list[str]:
    """The document ids of the ``k`` passages ``rag.retrieve`` returns, best first (ids may repeat)."""
    import rag

    return [c.source for c in rag.retrieve(question, k=k, index=index)]


def ours_ask(index, question: str) -> tuple[str, bool, list[str]]:
    """(prediction, abstained, cited document ids). The prediction is scored as ``python -m eval`` does:
    the short answer, else the reply without its [n] marks."""
    import rag
    from eval.metrics import strip_marks

    answer = rag.ask(question, index=index)
    prediction = answer.short_answer or strip_marks(answer.text).strip()
    return prediction, answer.abstained, [c.source for c in answer.citations]


def ours_facts(index) -> dict:
    import rag

    return {"rag": str(Path(rag.__file__).parent)}


@contextmanager
def ours_store_encoder(replacement: Callable) -> Iterator[None]:
    """Swap the encoder that index building calls, for the synthetic corpus only.

    That encoder is ``rag.embedding.encode_passages(texts, sentence_spans, *, progress=False)`` returning
    ``(passage vectors, sentence vectors)`` (unit float32 rows of dimension 384), and ``rag.batches`` imports
    it by name, so the name is replaced in ``rag.batches``, where it is used.
    """
    import rag.batches

    real = rag.batches.encode_passages
    rag.batches.encode_passages = replacement
    try:
        yield
    finally:
        rag.batches.encode_passages = real
