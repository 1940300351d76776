"""The stateless RAG application tier."""

from magicaf_nb.app.service import create_app

__all__ = ["create_app"]
