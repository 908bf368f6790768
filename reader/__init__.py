"""The thin reader: a Python client and an HTTP service over the Redis keyspace. No Bytewax here."""

from reader.client import FeedPage, InvalidCursor, PersonaClient, explain

__all__ = ["FeedPage", "InvalidCursor", "PersonaClient", "explain"]
