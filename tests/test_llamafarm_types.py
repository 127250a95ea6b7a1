"""Every component type LlamaFarm 0.0.27's rag schema names is ours or refused by design, and
every config key its schema gives a type we map is honoured or warned about, never a 422.

The schema is the reference copy in the shared folder; without it the tests skip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llamafarm.components import UNAVAILABLE, check_components
from llamafarm.config.models import ProjectConfig
from llamafarm.errors import ConfigInvalid
from llamafarm.ingest.extractors import EXTRACTORS
from llamafarm.ingest.parsers import parser_class
from llamafarm.rag.embedders import EMBEDDERS
from llamafarm.rag.retrieval import ALIASES, RETRIEVERS
from llamafarm.rag.stores import STORES

REFERENCE = [
    Path(__file__).parents[1].parent / "shared" / "reference" / "llamafarm-0.0.27",
    Path("/work/shared/reference/llamafarm-0.0.27"),
]

PARSER_BLOCKS = {
    "autoParserConfig": "auto",
    "universalParserConfig": "UniversalParser",
    "pdfParserPyPDF2Config": "PDFParser_PyPDF2",
    "pdfParserLlamaIndexConfig": "PDFParser_LlamaIndex",
    "csvParserPandasConfig": "CSVParser_Pandas",
    "csvParserPythonConfig": "CSVParser_Python",
    "csvParserLlamaIndexConfig": "CSVParser_LlamaIndex",
    "excelParserOpenPyXLConfig": "ExcelParser_OpenPyXL",
    "excelParserPandasConfig": "ExcelParser_Pandas",
    "excelParserLlamaIndexConfig": "ExcelParser_LlamaIndex",
    "docxParserPythonDocxConfig": "DocxParser_PythonDocx",
    "docxParserLlamaIndexConfig": "DocxParser_LlamaIndex",
    "markdownParserPythonConfig": "MarkdownParser_Python",
    "markdownParserLlamaIndexConfig": "MarkdownParser_LlamaIndex",
    "textParserPythonConfig": "TextParser_Python",
    "textParserLlamaIndexConfig": "TextParser_LlamaIndex",
    "msgParserExtractMsgConfig": "MsgParser_ExtractMsg",
}
"""The schema names parser types by a pattern, not an enum: each config block is one type."""
EXTRACTOR_BLOCKS = {
    "keywordExtractorConfig": ["KeywordExtractor", "RAKEExtractor", "TFIDFExtractor"],
    "yakeExtractorConfig": ["YAKEExtractor", "KeywordExtractor"],
    "entityExtractorConfig": ["EntityExtractor"],
    "dateTimeExtractorConfig": ["DateTimeExtractor"],
    "headingExtractorConfig": ["HeadingExtractor"],
    "linkExtractorConfig": ["LinkExtractor"],
    "pathExtractorConfig": ["PathExtractor"],
    "patternExtractorConfig": ["PatternExtractor"],
    "statisticsExtractorConfig": ["ContentStatisticsExtractor"],
    "contentStatisticsExtractorConfig": ["ContentStatisticsExtractor"],
    "summaryExtractorConfig": ["SummaryExtractor"],
    "tableExtractorConfig": ["TableExtractor"],
    "universalExtractorConfig": ["UniversalExtractor"],
    "sentimentExtractorConfig": [],  # in the schema, but no extractor type names it
}
EMBEDDER_BLOCKS = {
    "universalEmbedderConfig": "UniversalEmbedder",
    "ollamaEmbedderConfig": "OllamaEmbedder",
    "huggingfaceEmbedderConfig": "HuggingFaceEmbedder",
    "openaiEmbedderConfig": "OpenAIEmbedder",
    "sentenceTransformerConfig": "SentenceTransformerEmbedder",
}
STORE_BLOCKS = {
    "chromaStoreConfig": "ChromaStore",
    "qdrantStoreConfig": "QdrantStore",
    "faissStoreConfig": "FAISSStore",
    "pineconeStoreConfig": "PineconeStore",
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    folder = next((p for p in REFERENCE if (p / "rag-schema.yaml").is_file()), None)
    if folder is None:
        pytest.skip("LlamaFarm 0.0.27's rag-schema.yaml is not in shared/reference")
    definitions: dict[str, Any] = yaml.safe_load((folder / "rag-schema.yaml").read_text())[
        "definitions"
    ]
    return definitions


def enums(schema: dict[str, Any]) -> dict[str, set[str]]:
    """Every type name the schema lists, by family."""
    retrieval = set(schema["DatabaseRetrievalType"]["enum"])
    retrieval |= {
        c["properties"]["type"]["const"] for c in schema["retrievalStrategyConfig"]["oneOf"]
    }
    return {
        "parser": set(PARSER_BLOCKS.values()),
        "extractor": set(schema["extractorConfig"]["properties"]["type"]["enum"]),
        "embedder": set(schema["embedderConfig"]["properties"]["type"]["enum"])
        | set(schema["DatabaseEmbeddingType"]["enum"]),
        "store": set(schema["vectorStoreConfig"]["properties"]["type"]["enum"])
        | set(schema["DatabaseType"]["enum"]),
        "retrieval": retrieval,
    }


def registered(family: str, name: str) -> bool:
    registry: Any = {
        "extractor": EXTRACTORS,
        "embedder": EMBEDDERS,
        "store": STORES,
        "retrieval": RETRIEVERS,
    }.get(family)
    return parser_class(name) is not None if registry is None else name in registry


def test_the_block_tables_cover_the_schema(schema: dict[str, Any]) -> None:
    assert set(PARSER_BLOCKS) == set(schema["parsers"])
    assert set(EXTRACTOR_BLOCKS) == set(schema["extractors"])
    assert set(EMBEDDER_BLOCKS) == set(schema["embedders"])
    assert set(STORE_BLOCKS) == set(schema["vectorStores"])


def test_every_schema_type_is_ours_or_refused_with_a_reason(schema: dict[str, Any]) -> None:
    for family, names in enums(schema).items():
        for name in sorted(names):
            ours = registered(family, name)
            assert ours != (name in UNAVAILABLE), (family, name)
    assert all(any(name in n for n in enums(schema).values()) for name in UNAVAILABLE)


def example(node: dict[str, Any]) -> Any:
    """A value the schema allows for a key: its const, default or example, else one of its
    type."""
    if "const" in node:
        return node["const"]
    if "default" in node:
        return node["default"]
    if node.get("examples"):
        return node["examples"][0]
    if node.get("enum"):
        return node["enum"][0]
    kind = node.get("type", "string")
    kind = next(k for k in kind if k != "null") if isinstance(kind, list) else kind
    if kind in ("integer", "number"):
        return node.get("minimum", 1)
    return {"string": "x", "boolean": True, "array": [], "object": {}}[kind]


def full(block: dict[str, Any]) -> dict[str, Any]:
    return {key: example(node) for key, node in block["properties"].items()}


def project(rag: dict[str, Any]) -> ProjectConfig:
    return ProjectConfig.model_validate(
        {
            "name": "bot",
            "namespace": "acme",
            "runtime": {"provider": "ollama", "model": "llama3.2:3b"},
            "rag": rag,
        }
    )


def processing(**entry: Any) -> dict[str, Any]:
    return {
        "data_processing_strategies": [{"name": "p", "parsers": [{"type": "auto"}], **entry}],
        "databases": [],
    }


def database(**entry: Any) -> dict[str, Any]:
    return {"databases": [{"name": "main_db", "type": "ChromaStore", **entry}]}


def configs(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """One rag section per mapped type, its config holding every key of its schema block."""
    found = [
        (name, processing(parsers=[{"type": name, "config": full(schema["parsers"][block])}]))
        for block, name in PARSER_BLOCKS.items()
    ]
    found += [
        (name, processing(extractors=[{"type": name, "config": full(schema["extractors"][block])}]))
        for block, names in EXTRACTOR_BLOCKS.items()
        for name in names
    ]
    found += [
        (
            name,
            database(
                embedding_strategies=[
                    {"name": "e", "type": name, "config": full(schema["embedders"][block])}
                ]
            ),
        )
        for block, name in EMBEDDER_BLOCKS.items()
    ]
    found += [
        (name, database(type=name, config=full(schema["vectorStores"][block])))
        for block, name in STORE_BLOCKS.items()
        if name not in UNAVAILABLE
    ]
    blocks = {
        choice["properties"]["type"]["const"]: choice["properties"]["config"]["$ref"]
        for choice in schema["retrievalStrategyConfig"]["oneOf"]
    }
    blocks |= {alias: blocks[target] for alias, target in ALIASES.items()}  # no block of their own
    for name, ref in blocks.items():
        config = full(schema["retrievalStrategies"][ref.rsplit("/", 1)[1]])
        found.append(
            (name, database(retrieval_strategies=[{"name": "r", "type": name, "config": config}]))
        )
    bm25 = {"top_k": 5, "stop_words": ["the"]}  # LlamaFarm's docs' example; the schema has none
    found.append(
        (
            "BM25Retriever",
            database(retrieval_strategies=[{"name": "r", "type": "BM25Retriever", "config": bm25}]),
        )
    )
    return found


def test_every_schema_key_of_a_mapped_type_is_honoured_or_warned(schema: dict[str, Any]) -> None:
    refused = []
    for name, rag in configs(schema):
        try:
            check_components(project(rag))
        except ConfigInvalid as exc:
            refused.append(f"{name}: {exc.detail}")
    assert not refused, "\n".join(refused)


def test_a_type_we_cannot_provide_says_why_and_the_docs_list_it() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    for name, reason in UNAVAILABLE.items():
        assert f"`{name}`" in docs, name
        rag = (
            database(type=name)
            if name.endswith("Store")
            else database(retrieval_strategies=[{"name": "r", "type": name}])
        )
        with pytest.raises(ConfigInvalid) as refused:
            check_components(project(rag))
        assert f"'{name}' (known: " in refused.value.detail and reason in refused.value.detail


def test_warnings_name_the_keys_we_do_not_honour() -> None:
    rag = database(
        retrieval_strategies=[
            {"name": "w", "type": "BM25Retriever", "config": {"stop_words": ["a"]}},
            {"name": "v", "type": "VectorRetriever", "config": {"top_k": 3}},
            {
                "name": "h",
                "type": "HybridRetriever",
                "config": {"combination_method": "rank_fusion"},
            },
        ]
    )
    extractor = {"type": "UniversalExtractor", "config": {"use_gliner": True}}
    rag["data_processing_strategies"] = processing(extractors=[extractor])[
        "data_processing_strategies"
    ]
    warnings = check_components(project(rag))
    where = "rag.databases[0].retrieval_strategies"
    ignored = "here; accepted and ignored"
    assert f"{where}[0].config.stop_words: not supported by BM25Retriever {ignored}" in warnings
    assert f"{where}[2].config.combination_method: not supported by HybridRetriever {ignored}" in (
        warnings
    )
    assert not any(f"{where}[1]" in w for w in warnings)
    assert any(
        w.startswith(
            "rag.data_processing_strategies[0].extractors[0].config.use_gliner: needs a GLiNER"
        )
        for w in warnings
    )
