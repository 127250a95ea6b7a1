"""Ingestion: parsers (one module per format), chunking, extractors and the per-file pipeline."""
