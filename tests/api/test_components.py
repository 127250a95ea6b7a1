"""LlamaFarm's component types at PUT: mapped and accepted, warned about, or refused naming
the types we know; and the same check when a worker loads a project edited by hand."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from llamafarm.components import check_components
from llamafarm.errors import ConfigInvalid
from llamafarm.projects import ProjectStore
from llamafarm.settings import Settings

Change = Callable[[dict[str, Any]], None]


def rag(config: dict[str, Any]) -> dict[str, Any]:
    section: dict[str, Any] = config["rag"]
    return section


def put(client: TestClient, config: dict[str, Any]) -> Any:
    return client.put("/v1/projects/acme/bot", json={"config": config})


def changed(project: dict[str, Any], change: Change) -> dict[str, Any]:
    config = copy.deepcopy(project["config"])
    change(config)
    return config


def _set(path: str, value: Any) -> Change:
    def change(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = config
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


@pytest.mark.parametrize(
    ("change", "where", "known"),
    [
        (
            _set("rag.data_processing_strategies.0.parsers.0.type", "AudioParser_Vosk"),
            "data_processing_strategies[0].parsers[0].type: Unknown parser type 'AudioParser_Vosk'",
            "PDFParser_PyPDF2",
        ),
        (
            _set("rag.data_processing_strategies.0.parsers.0.fallback_parser", "DoclingParser"),
            "rag.data_processing_strategies[0].parsers[0].fallback_parser: Unknown parser",
            "UniversalParser",
        ),
        (
            _set("rag.data_processing_strategies.0.extractors", [{"type": "SentimentExtractor"}]),
            "rag.data_processing_strategies[0].extractors[0].type: Unknown extractor type",
            "ContentStatisticsExtractor",
        ),
        (
            _set("rag.databases.0.type", "PineconeStore"),
            "rag.databases[0].type: Unknown database type 'PineconeStore'",
            "known: ChromaStore, QdrantStore",
        ),
        (
            _set("rag.databases.0.embedding_strategies.0.type", "ClipEmbedder"),
            "rag.databases[0].embedding_strategies[0].type: Unknown embedding strategy type",
            "SentenceTransformerEmbedder",
        ),
        (
            _set("rag.databases.0.retrieval_strategies.1.type", "GraphRetriever"),
            "rag.databases[0].retrieval_strategies[1].type: Unknown retrieval strategy type",
            "GraphRetriever is not provided here: needs a knowledge graph",
        ),
    ],
)
def test_a_type_we_cannot_provide_fails_at_put_naming_the_known_ones(
    client: TestClient, project: dict[str, Any], change: Change, where: str, known: str
) -> None:
    response = put(client, changed(project, change))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert where in detail and known in detail and "(known: " in detail
    # Nothing was written: the project still has the template's config.
    assert client.get("/v1/projects/acme/bot").json()["project"]["config"] == project["config"]


LLAMAFARM_RAG: dict[str, Any] = yaml.safe_load(
    """
databases:
  - name: main_db
    type: ChromaStore
    config: {collection_name: documents, distance_metric: cosine, embedding_dimension: 384,
             persist_directory: ./data/main_db}
    embedding_strategies:
      - name: default_embeddings
        type: HuggingFaceEmbedder
        config: {model_name: sentence-transformers/all-MiniLM-L6-v2, device: auto,
                 batch_size: 16, normalize_embeddings: true}
    retrieval_strategies:
      - name: basic
        type: BasicSimilarityStrategy
        config: {top_k: 5, score_threshold: 0.1}
        default: true
      - name: reranked
        type: RerankedStrategy
        config: {initial_k: 20, final_k: 5, rerank_factors: {recency: 0.1, length: 0.05}}
      - name: multi_turn
        type: MultiTurnRAGStrategy
        config: {model_name: qwen3:8b, max_sub_queries: 3, complexity_threshold: 40}
      - name: filtered
        type: MetadataFilteredStrategy
        config: {top_k: 5, filters: {source: a.pdf}, filter_mode: post}
      - name: blended
        type: HybridUniversalStrategy
        config:
          strategies: [{type: BasicSimilarityStrategy, config: {top_k: 8}, weight: 0.6}]
          fusion_method: rrf
          top_k: 8
      - name: words
        type: BM25Retriever
        config: {top_k: 5, stop_words: [the, a]}
      - {name: vectors, type: VectorRetriever, config: {top_k: 5}}
      - {name: both, type: HybridRetriever, config: {fusion_method: weighted}}
      - {name: factors, type: RerankedRetriever, config: {initial_k: 20, final_k: 5}}
  - name: vectors_q
    type: QdrantStore
    config: {collection_name: docs, distance: Cosine, grpc_port: 6334}
    embedding_strategies:
      - name: st
        type: SentenceTransformerEmbedder
        config: {model_name: all-MiniLM-L6-v2}
      - name: universal
        type: UniversalEmbedder
        config: {model: all-MiniLM-L6-v2, dimension: 384, batch_size: 16, auto_pull: true}
data_processing_strategies:
  - name: default_processor
    parsers:
      - type: PDFParser_PyPDF2
        file_extensions: [".pdf", ".PDF"]
        mime_types: [application/pdf]
        priority: 10
        fallback_parser: TextParser_Python
        config: {chunk_size: 1000, chunk_overlap: 100, chunk_strategy: paragraphs,
                 extract_metadata: true, extract_images: false}
      - type: MarkdownParser_LlamaIndex
        file_include_patterns: ["*.md"]
        config: {chunk_size: 800, chunk_strategy: headings, extract_code_blocks: true}
      - type: auto
        config: {chunk_size: 1000, chunk_overlap: 200}
    extractors:
      - type: EntityExtractor
        config: {entity_types: [PERSON, EMAIL, MONEY], use_fallback: true}
      - type: KeywordExtractor
        config: {algorithm: yake, max_keywords: 5}
      - type: ContentStatisticsExtractor
        config: {include_readability: true, include_sentiment_indicators: true}
      - type: UniversalExtractor
        config: {keyword_count: 5, generate_summary: true, summary_sentences: 2,
                 extract_entities: false, detect_language: true, use_gliner: true}
"""
)


def test_a_llamafarm_rag_section_is_accepted_with_its_warnings(
    client: TestClient, project: dict[str, Any]
) -> None:
    config = changed(project, lambda c: c.update(rag=copy.deepcopy(LLAMAFARM_RAG)))
    response = put(client, config)
    assert response.status_code == 200, response.text
    warnings = response.json()["project"]["warnings"]
    expected = [
        "rag.data_processing_strategies[0].parsers[0].config.extract_images: not supported",
        "rag.data_processing_strategies[0].parsers[1].config.extract_code_blocks: not supported",
        "rag.data_processing_strategies[0].extractors[0]: entity types PERSON need a NER model",
        "rag.data_processing_strategies[0].extractors[0].config.use_fallback: not supported",
        "rag.data_processing_strategies[0].extractors[2].config.include_sentiment_indicators:",
        "rag.databases[0].config.embedding_dimension: not supported by ChromaStore",
        "rag.databases[0].config.persist_directory: not supported by ChromaStore",
        "rag.databases[0].embedding_strategies[0].config.device: not supported",
        "rag.databases[0].retrieval_strategies[2].config.model_name: not supported",
        "rag.databases[0].retrieval_strategies[3].config.filter_mode: not supported",
        "rag.databases[0].retrieval_strategies[4].config.strategies: not supported",
        "rag.databases[0].retrieval_strategies[5].config.stop_words: not supported by BM25Retr",
        "rag.databases[1].config.grpc_port: not supported by QdrantStore",
        "rag.databases[1].embedding_strategies[1].config.auto_pull: not supported by Universal",
        "rag.data_processing_strategies[0].extractors[3].config.use_gliner: needs a GLiNER model",
    ]
    for start in expected:
        assert any(w.startswith(start) for w in warnings), (start, warnings)
    assert not any("chunk_size" in w or "score_threshold" in w for w in warnings)
    assert not any("fusion_method" in w or "keyword_count" in w for w in warnings)
    got = client.get("/v1/projects/acme/bot").json()["project"]
    assert got["config"]["rag"] == LLAMAFARM_RAG and got["warnings"] == warnings


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _set("rag.data_processing_strategies.0.parsers.0.config", {"chunk_size": 10}),
            "parsers[0].config: chunk_size must be a whole number of at least 100",
        ),
        (
            _set(
                "rag.data_processing_strategies.0.extractors",
                [{"type": "PatternExtractor", "config": {"predefined_patterns": ["iban"]}}],
            ),
            "extractors[0].config: PatternExtractor: unknown predefined pattern 'iban'",
        ),
        (
            _set("rag.databases.0.config", {"host": "localhost", "port": "eight"}),
            "rag.databases[0].config: ChromaStore config: host must be a name and port",
        ),
    ],
)
def test_a_component_config_that_cannot_work_fails_at_put(
    client: TestClient, project: dict[str, Any], change: Change, message: str
) -> None:
    response = put(client, changed(project, change))
    assert response.status_code == 422 and message in response.json()["detail"], response.text


def test_a_project_edited_by_hand_fails_when_the_worker_loads_it(
    client: TestClient, project: dict[str, Any], settings: Settings
) -> None:
    folder = settings.data_dir / "projects" / "acme" / "bot"
    document = yaml.safe_load((folder / "llamafarm.yaml").read_text())
    document["rag"]["databases"][0]["type"] = "FaissStore"
    (folder / "llamafarm.yaml").write_text(yaml.safe_dump(document))
    worker_store = ProjectStore(settings.projects_dir, check=check_components)
    with pytest.raises(ConfigInvalid, match=r"rag.databases\[0\].type: Unknown database type"):
        worker_store.load("acme", "bot")
    shown = client.get("/v1/projects/acme/bot").json()["project"]
    assert "Unknown database type 'FaissStore'" in shown["validation_error"]
    assert client.get("/v1/projects/acme/bot/datasets").status_code == 422


def test_a_missing_hugging_face_model_is_accepted_and_named_when_needed(
    client: TestClient, project: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    strategy = {
        "name": "default_embeddings",
        "type": "HuggingFaceEmbedder",
        "config": {"model_name": "acme/no-such-model", "cache_folder": str(tmp_path)},
    }
    config = changed(project, _set("rag.databases.0.embedding_strategies.0", strategy))
    assert put(client, config).status_code == 200
    response = client.post(
        "/v1/projects/acme/bot/rag/query", json={"query": "ducks", "database": "main_db"}
    )
    assert response.status_code == 503, response.text
    assert "'acme/no-such-model' is not available offline" in response.json()["detail"]
