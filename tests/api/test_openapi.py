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


def test_every_documented_error_is_a_detail_string(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert spec["components"]["schemas"]["Error"] == {
        "properties": {"detail": {"type": "string", "title": "Detail"}},
        "type": "object",
        "required": ["detail"],
        "title": "Error",
        "description": "The body of every error answer.",
    }
    for operation in _operations(client):
        for status, response in operation["responses"].items():
            if status.startswith("4"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, operation["operationId"]


def test_operations_with_names_in_the_path_document_400_404_and_422(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        for operation in methods.values():
            if "{" in path:
                assert {"400", "404", "422"} <= set(operation["responses"]), path
