"""Build and inspect the index: ``python -m index build [--source DIR] [--out DIR]``.

The built index lives in ``index/data/`` by default (git-ignored); see :mod:`rag.store` for its layout.
"""
