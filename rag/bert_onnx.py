"""BERT-family models as ONNX graphs, for the reader and the query encoder alike: exporting one from torch,
opening it for onnxruntime on the CPU, and feeding it a padded batch of ``tokenizers`` encodings."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export(module, path: Path, outputs: Sequence[str]) -> None:
    """Write ``module`` (called as ``module(input_ids, attention_mask, token_type_ids)``) to ``path`` as an
    fp32 ONNX graph (opset 17) whose batch and piece axes are dynamic. Needs torch and onnx."""
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shapes that the dynamic axes cover
        torch.onnx.export(
            module.eval(),
            tuple(torch.ones((1, 16), dtype=torch.long) for _ in INPUTS),
            str(path),
            input_names=list(INPUTS),
            output_names=list(outputs),
            dynamic_axes={n: {0: "batch", 1: "pieces"} for n in [*INPUTS, *outputs]},
            opset_version=17,
            dynamo=False,
        )


def fuse(path: Path, config) -> None:
    """Rewrite the graph at ``path`` (exported from a BERT ``transformers`` model with eager attention)
    with onnxruntime's fused BERT operators - attention, layer norms, GELU - in place: the same numbers
    in fewer, faster steps. ``config`` is the model's, for its heads and width."""
    from onnxruntime.transformers import optimizer

    fused = optimizer.optimize_model(
        str(path),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        opt_level=0,
    )
    fused.save_model_to_file(str(path))


def session(path: Path, *, threads: int, spin: bool = True):
    """An onnxruntime session on the CPU with ``threads`` threads within an operator. With ``spin``, the
    threads keep spinning for a moment after each run, ready for the next (faster when runs follow one
    another, but they take cores from whatever runs next in the process)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def batch(encodings: Sequence) -> dict[str, np.ndarray]:
    """The graph's inputs for ``encodings``, right-padded to the longest."""
    width = max(len(e.ids) for e in encodings)
    feed = {name: np.zeros((len(encodings), width), dtype=np.int64) for name in INPUTS}
    for row, e in enumerate(encodings):
        n = len(e.ids)
        feed["input_ids"][row, :n] = e.ids
        feed["attention_mask"][row, :n] = e.attention_mask
        feed["token_type_ids"][row, :n] = e.type_ids
    return feed
