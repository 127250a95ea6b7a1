from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

# Operation IDs the reference's MCP section names.
MCP_OPERATIONS = {
    "projects_list",
    "project_create",
    "project_get",
    "project_update",
    "project_delete",
    "dataset_list",
    "dataset_strategies_list",
    "dataset_create",
    "dataset_delete",
    "dataset_actions",
    "dataset_data_upload",
    "task_get",
    "rag_query",
    "database_create",
    "database_get",
    "database_update",
    "database_delete",
    "models_list",
}


def _operations(client: TestClient) -> list[dict[str, Any]]:
    spec = client.get("/openapi.json").json()
    return [op for methods in spec["paths"].values() for op in methods.values()]


def test_every_route_has_an_operation_id_tags_and_summary(client: TestClient) -> None:
    operations = _operations(client)
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids))
    for operation in operations:
        assert operation["tags"] and operation["summary"], operation["operationId"]


def test_mcp_tag_marks_the_reference_operations(client: TestClient) -> None:
    tagged = {op["operationId"] for op in _operations(client) if "mcp" in op["tags"]}
    assert tagged == MCP_OPERATIONS


def test_create_is_documented_as_201(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/projects/{namespace}"]["post"]
    assert operation["operationId"] == "project_create"
    assert set(operation["tags"]) == {"projects", "mcp"}
    assert "201" in operation["responses"]
