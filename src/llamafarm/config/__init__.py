"""`llamafarm.yaml`: schema, loading with `${VAR}` substitution, templates, JSON Schema."""

from llamafarm.config.loader import (
    dump_document,
    json_schema,
    parse_config,
    parse_document,
    read_document,
)
from llamafarm.config.models import ProjectConfig
from llamafarm.config.policy import ConfigPolicy
from llamafarm.config.templates import available_templates, render_template
from llamafarm.config.unsupported import config_warnings

__all__ = [
    "ConfigPolicy",
    "ProjectConfig",
    "available_templates",
    "config_warnings",
    "dump_document",
    "json_schema",
    "parse_config",
    "parse_document",
    "read_document",
    "render_template",
]
