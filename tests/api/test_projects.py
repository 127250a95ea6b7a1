from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

import yaml
from fastapi.testclient import TestClient

from llamafarm.settings import Settings


def test_create_get_list(client: TestClient, settings: Settings) -> None:
    response = client.post("/v1/projects/acme", json={"name": "chat", "config_template": "server"})
    assert response.status_code == 201
    project = response.json()["project"]
    assert (project["namespace"], project["name"]) == ("acme", "chat")
    assert project["config"]["runtime"]["models"][0]["provider"] == "universal"
    assert "rag" not in project["config"]

    on_disk = settings.data_dir / "projects" / "acme" / "chat" / "llamafarm.yaml"
    assert yaml.safe_load(on_disk.read_text()) == project["config"]

    assert client.get("/v1/projects/acme/chat").json() == {"project": project}
    client.post("/v1/projects/acme", json={"name": "rag-bot"})
    listing = client.get("/v1/projects/acme").json()
    assert listing["total"] == 2
    assert [p["name"] for p in listing["projects"]] == ["chat", "rag-bot"]


def test_namespaces_with_projects_are_listed(client: TestClient) -> None:
    assert client.get("/v1/projects").json() == {"total": 0, "namespaces": []}
    client.post("/v1/projects/beta", json={"name": "one", "config_template": "server"})
    client.post("/v1/projects/alpha", json={"name": "one", "config_template": "server"})
    client.post("/v1/projects/alpha", json={"name": "two", "config_template": "server"})
    client.post("/v1/projects/gone", json={"name": "one", "config_template": "server"})
    client.delete("/v1/projects/gone/one")  # its folder may stay: not listed
    assert client.get("/v1/projects").json() == {
        "total": 2,
        "namespaces": [
            {"name": "alpha", "project_count": 2},
            {"name": "beta", "project_count": 1},
        ],
    }


def test_default_template_is_rag(client: TestClient, project: dict[str, Any]) -> None:
    config = project["config"]
    assert config["rag"]["default_database"] == "main_db"
    assert config["datasets"][0]["name"] == "documents"


def test_list_of_an_unknown_namespace_is_empty(client: TestClient) -> None:
    assert client.get("/v1/projects/nobody").json() == {"total": 0, "projects": []}


def test_create_twice_conflicts(client: TestClient, project: dict[str, Any]) -> None:
    response = client.post("/v1/projects/acme", json={"name": "bot"})
    assert response.status_code == 409
    assert response.json() == {"detail": "Project acme/bot already exists"}


def test_update_replaces_config_and_keeps_a_backup(
    client: TestClient, project: dict[str, Any], settings: Settings
) -> None:
    config = dict(project["config"])
    config["runtime"] = {"provider": "ollama", "model": "llama3.2:3b"}
    response = client.put("/v1/projects/acme/bot", json={"config": config})
    assert response.status_code == 200
    assert response.json()["project"]["config"]["runtime"] == config["runtime"]
    assert client.get("/v1/projects/acme/bot").json()["project"]["config"] == config

    folder = settings.data_dir / "projects" / "acme" / "bot"
    backup = yaml.safe_load((folder / "llamafarm.yaml.bak").read_text())
    assert backup == project["config"]
    assert sorted(p.name for p in folder.iterdir()) == [
        ".lock",
        "llamafarm.yaml",
        "llamafarm.yaml.bak",
    ]


def test_update_keeps_env_placeholders(client: TestClient, project: dict[str, Any]) -> None:
    config = dict(project["config"])
    config["runtime"] = {"provider": "openai", "model": "m", "api_key": "${NOT_SET_ANYWHERE:-x}"}
    client.put("/v1/projects/acme/bot", json={"config": config})
    stored = client.get("/v1/projects/acme/bot").json()["project"]["config"]
    assert stored["runtime"]["api_key"] == "${NOT_SET_ANYWHERE:-x}"


def test_update_rejects_invalid_config_and_leaves_the_file(
    client: TestClient, project: dict[str, Any]
) -> None:
    config = dict(project["config"], colour="blue")
    response = client.put("/v1/projects/acme/bot", json={"config": config})
    assert response.status_code == 422
    assert response.json() == {"detail": "Invalid config: colour: unknown key"}
    assert client.get("/v1/projects/acme/bot").json()["project"] == project


def test_update_cannot_rename(client: TestClient, project: dict[str, Any]) -> None:
    config = dict(project["config"], name="other")
    response = client.put("/v1/projects/acme/bot", json={"config": config})
    assert response.status_code == 400
    assert "config.name is 'other' but the path says 'bot'" in response.json()["detail"]


def test_delete_removes_the_folder(
    client: TestClient, project: dict[str, Any], settings: Settings
) -> None:
    response = client.delete("/v1/projects/acme/bot")
    assert response.status_code == 200
    assert response.json() == {"project": project}
    assert client.get("/v1/projects/acme/bot").status_code == 404
    assert not (settings.data_dir / "projects" / "acme").exists()
    assert client.delete("/v1/projects/acme/bot").status_code == 404
    # The name is free again.
    assert client.post("/v1/projects/acme", json={"name": "bot"}).status_code == 201


def test_broken_config_is_listed_with_its_error_fixable_and_deletable(
    client: TestClient, project: dict[str, Any], settings: Settings
) -> None:
    client.post("/v1/projects/acme", json={"name": "good"})
    folder = settings.data_dir / "projects" / "acme" / "bot"
    (folder / "llamafarm.yaml").write_text("name: [broken\n")

    broken = client.get("/v1/projects/acme/bot").json()["project"]
    assert broken["config"] == {}
    assert broken["validation_error"].startswith("llamafarm.yaml is not valid YAML")
    listing = client.get("/v1/projects/acme").json()["projects"]
    assert [(p["name"], p["validation_error"] is None) for p in listing] == [
        ("bot", False),
        ("good", True),
    ]
    # Whatever uses the config still refuses it, with the reason.
    chat = client.get("/v1/projects/acme/bot/datasets")
    assert chat.status_code == 422
    assert "not valid YAML" in chat.json()["detail"]

    # A config that parses but is invalid is shown as written, and a PUT fixes it.
    invalid = dict(project["config"], colour="blue")
    (folder / "llamafarm.yaml").write_text(yaml.safe_dump(invalid))
    shown = client.get("/v1/projects/acme/bot").json()["project"]
    assert shown["config"] == invalid
    assert shown["validation_error"] == "Invalid config: colour: unknown key"
    fixed = client.put("/v1/projects/acme/bot", json={"config": project["config"]})
    assert fixed.status_code == 200
    assert fixed.json()["project"]["validation_error"] is None

    (folder / "llamafarm.yaml").write_text("name: [broken\n")
    deleted = client.delete("/v1/projects/acme/bot").json()["project"]
    assert (deleted["config"], deleted["warnings"]) == ({}, [])
    assert not folder.exists()


def test_projects_carry_their_last_modified_time(
    client: TestClient, project: dict[str, Any], settings: Settings
) -> None:
    on_disk = settings.data_dir / "projects" / "acme" / "bot" / "llamafarm.yaml"
    stamp = datetime.fromisoformat(project["last_modified"])
    assert stamp.utcoffset() == timedelta(0)
    assert abs(stamp.timestamp() - on_disk.stat().st_mtime) < 1e-5
    os.utime(on_disk, (1_700_000_000, 1_700_000_000))
    listed = client.get("/v1/projects/acme").json()["projects"][0]
    assert listed["last_modified"] == "2023-11-14T22:13:20Z"


def test_custom_template_from_the_data_dir(client: TestClient, settings: Settings) -> None:
    settings.templates_dir.mkdir(parents=True)
    (settings.templates_dir / "team.yaml").write_text(
        "runtime:\n  provider: ollama\n  model: qwen3:8b\n"
    )
    response = client.post("/v1/projects/acme", json={"name": "t", "config_template": "team"})
    assert response.status_code == 201
    assert response.json()["project"]["config"]["runtime"]["model"] == "qwen3:8b"


def test_names_never_leave_the_data_dir(client: TestClient, settings: Settings) -> None:
    for name in ["../escape", "/etc/passwd", "a/b", "..", "", "x" * 65, ".hidden", "a\\b"]:
        response = client.post("/v1/projects/acme", json={"name": name})
        assert response.status_code == 400, name
    outside = sorted(p.name for p in settings.data_dir.parent.iterdir())
    assert outside == ["data"]
    assert list((settings.data_dir / "projects").iterdir()) == []


def test_update_refuses_to_drop_a_dataset_that_has_files(
    client: TestClient, project: dict[str, Any]
) -> None:
    upload = client.post(
        "/v1/projects/acme/bot/datasets/documents/data", files={"file": ("a.txt", b"alpha")}
    )
    assert upload.status_code == 200
    config = dict(project["config"], datasets=[])
    response = client.put("/v1/projects/acme/bot", json={"config": config})
    assert response.status_code == 409
    assert "['documents'] still have files" in response.json()["detail"]
    assert client.get("/v1/projects/acme/bot").json()["project"] == project

    # A dataset without files may go.
    client.post(
        "/v1/projects/acme/bot/datasets",
        json={
            "name": "empty",
            "database": "main_db",
            "data_processing_strategy": "default_processor",
        },
    )
    kept = client.get("/v1/projects/acme/bot").json()["project"]["config"]
    kept["datasets"] = [d for d in kept["datasets"] if d["name"] != "empty"]
    assert client.put("/v1/projects/acme/bot", json={"config": kept}).status_code == 200
