"""Datasets: named sets of uploaded files in a project, stored once per content hash."""
