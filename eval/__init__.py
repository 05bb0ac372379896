"""Evaluation of the question answering library: ``python -m eval`` scores answers, citations and latency.

``metrics`` holds the pure scoring functions, ``data`` loads the question sets (our JSON Lines and
SQuAD v1.1), ``run`` asks every question and aggregates, and ``__main__`` is the command line.
"""
