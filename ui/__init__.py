"""The browser chat: python -m ui."""
