"""Retrieval: vector stores, embedders, and (later) retrieval strategies and the query service."""
