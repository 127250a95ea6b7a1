"""System services: component health and the release check."""
