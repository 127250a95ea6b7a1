"""Bundled example projects: a catalog read from their manifests, and their import."""
