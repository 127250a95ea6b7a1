"""Server settings, read from `LF_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_VERSION_CHECK_URL = "https://api.github.com/repos/llama-farm/llamafarm/releases/latest"


class Settings(BaseSettings):
    """Every setting of the server; each field is `LF_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="LF_", extra="ignore")

    data_dir: Path = Field(
        default=Path("~/.llamafarm"), description="Where projects and state are kept."
    )
    host: str = Field(default="127.0.0.1", description="Interface the server binds to.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the server listens on.")
    log_level: str = Field(default="info", description="debug, info, warning or error.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra browser origins allowed by CORS, comma-separated ('*' for any). "
        "Pages served from localhost or 127.0.0.1 on any port are always allowed.",
    )
    version_check_url: str = Field(
        default=DEFAULT_VERSION_CHECK_URL,
        description="Release feed for /v1/system/version-check; empty disables the check.",
    )
    version_check_timeout: float = Field(
        default=3.0, gt=0, le=60, description="Seconds before the outbound version check gives up."
    )
    version_check_ttl: float = Field(
        default=6 * 3600, ge=0, description="Seconds a successful version check is cached."
    )

    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of the state database; empty means SQLite in the data dir.",
    )
    migration_lock_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds to wait for another process migrating the state database before "
        "refusing to start.",
    )
    blob_store: Literal["local", "database"] = Field(
        default="local",
        description="Shared mode: 'database' keeps uploaded files and project configs in the "
        "state database (LF_DATABASE_URL; PostgreSQL when processes run on several machines), "
        "so API replicas (`lf start --no-worker`) and workers (`lf worker`) with data dirs of "
        "their own see the same projects and files; 'local' keeps them under the data dir.",
    )
    broker_url: str = Field(
        default="",
        description="Celery broker URL (e.g. redis://127.0.0.1:6379/0); empty means a local "
        "filesystem broker in the data dir that needs no server.",
    )
    result_backend: str = Field(
        default="",
        description="Celery result backend URL; optional, task state lives in the state database.",
    )
    chroma_url: str = Field(
        default="",
        description="A Chroma server (`chroma run`) every ChromaStore without `host` in its "
        "config keeps its vectors in, e.g. http://chroma:8000; empty keeps them in the project's "
        "folder (embedded). With a PostgreSQL state database the stores' BM25 index goes there.",
    )
    chroma_timeout: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Seconds a Chroma server may take over one request before it counts as "
        "unavailable (a 503 naming it).",
    )
    embedded_worker: bool = Field(
        default=True, description="Whether `lf start` also runs an ingestion worker process."
    )
    worker_concurrency: int = Field(
        default=16, ge=1, le=64, description="Files an ingestion worker processes at once."
    )
    embedding_cache_mb: int = Field(
        default=256,
        ge=0,
        description="Size of each RAG database's cache of chunk vectors, in MiB; the least "
        "recently used go beyond it. 0: every chunk is embedded again.",
    )
    parse_processes: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Parse processes of an ingestion worker: files it parses at once, each in a "
        "process of its own that a hung or oversized file cannot take the worker down with.",
    )
    parse_timeout_s: float = Field(
        default=300,
        gt=0,
        description="Seconds a worker waits, in all, for one file's parser (time spent embedding "
        "and storing its chunks is not counted); past it the parse process is killed and the "
        "file fails alone.",
    )
    parse_max_mb: int = Field(
        default=2048,
        ge=64,
        description="MiB of address space one file's parse may take beyond its process's "
        "start-up size (RLIMIT_AS, Linux); past it the parse stops and the file fails alone.",
    )
    parse_max_unzipped_mb: int = Field(
        default=1024,
        ge=1,
        description="MiB a zip-based file (DOCX, XLSX, PPTX, EPUB) may unpack to, from its "
        "central directory, before it is opened; more is refused as a zip bomb.",
    )
    parse_max_zip_ratio: float = Field(
        default=100,
        ge=2,
        description="Largest unpacked/packed size ratio of one entry (of more than 1 MiB) in a "
        "zip-based file; more is refused as a zip bomb.",
    )
    max_upload_mb: int = Field(default=100, ge=1, description="Largest accepted upload, in MiB.")
    max_json_kb: int = Field(
        default=2048,
        ge=64,
        description="Largest accepted request body that is not an upload (JSON), in KiB.",
    )
    session_ttl: float = Field(
        default=1800,
        gt=0,
        description="Seconds a chat session may stay unused before its history is dropped.",
    )

    event_retention_days: float = Field(
        default=30, gt=0, description="Days event logs are kept before they are deleted."
    )
    examples_dir: Path | None = Field(
        default=None,
        description="Folder of example projects served by /v1/examples; unset means the "
        "examples bundled with the package.",
    )
    mcp_allowed_commands: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Programs a project's stdio MCP servers may start, comma-separated: exact "
        "names found on PATH (`npx`) or absolute paths; empty allows none.",
    )
    config_env_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Environment variables `${VAR}` in project configs may use, comma-separated "
        "names or globs (`OPENAI_*`); empty allows none.",
    )
    allow_downloads: bool = Field(
        default=False,
        description="Whether a `universal` model named by Hugging Face id (ORG/NAME[:QUANT]) "
        "that is not in the cache is downloaded on first use (its GGUF file only); when false "
        "such a model is a 503 until `lf models pull` gets it.",
    )
    models_dir: Path | None = Field(
        default=None,
        description="A folder of model files that configs may name, besides the Hugging Face "
        "cache and the bundled models.",
    )
    model_idle_ttl: float = Field(
        default=300.0,
        ge=0,
        description="Seconds a local chat model stays loaded unused before it is unloaded "
        "(`keep_loaded` models never are); 0 keeps every model loaded.",
    )
    model_memory_gb: float | None = Field(
        default=None,
        gt=0,
        description="The most memory, in GB, the loaded local chat models may take together "
        "(their files plus KV caches, estimated); the least recently used idle one is "
        "unloaded first. Unset: no cap.",
    )

    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra host names (any port) the server answers to, comma-separated, "
        "besides localhost, 127.0.0.1, [::1] and the --host address; '*' for any (behind a "
        "reverse proxy that checks Host itself).",
    )
    require_auth: bool = Field(
        default=False,
        description="Require an API key on every route but /health/liveness, even before "
        "any key exists (`lf keys create`).",
    )

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("models_dir")
    @classmethod
    def _expand_models(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @field_validator(
        "cors_origins", "mcp_allowed_commands", "config_env_allow", "allowed_hosts", mode="before"
    )
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("chroma_url")
    @classmethod
    def _chroma_url(cls, value: str) -> str:
        value = value.strip()
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be http://HOST[:PORT] or https://HOST[:PORT]")
            if parts.path.strip("/") or parts.query or parts.username:
                raise ValueError("must name only a scheme, a host and a port")
            parts.port  # noqa: B018  (raises ValueError on a bad port)
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"critical", "error", "warning", "info", "debug"}:
            raise ValueError("must be one of critical, error, warning, info, debug")
        return level

    @property
    def projects_dir(self) -> Path:
        return self.data_dir / "projects"

    @property
    def templates_dir(self) -> Path:
        return self.data_dir / "templates"

    @property
    def state_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'state.db'}"

    @property
    def shared(self) -> bool:
        """Shared mode (`LF_BLOB_STORE=database`): projects and files in the state database."""
        return self.blob_store == "database"

    @property
    def broker(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb << 20

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"
