"""The browser chat over :mod:`rag`: ``python -m ui`` serves it on http://127.0.0.1:7860.

The app and its plain functions live in :mod:`ui.app`; nothing is loaded at import.
"""
