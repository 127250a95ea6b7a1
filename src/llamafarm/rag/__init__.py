"""Retrieval: embedders, vector stores, rerankers, retrieval strategies and the query service."""
