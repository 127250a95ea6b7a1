"""Scans, images and laid-out PDFs uploaded through the API are searchable as people read them."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.test_examples import query, run_pending

FIXTURES = Path(__file__).parent.parent / "fixtures"
BASE = "/v1/projects/acme/bot"


@pytest.mark.usefixtures("project")
def test_uploaded_scan_image_and_two_column_pdf_are_found_by_their_words(
    client: TestClient,
) -> None:
    for name in ("text.png", "scanned.pdf", "two-column.pdf"):
        response = client.post(
            f"{BASE}/datasets/documents/data",
            params={"auto_process": "false"},
            files={"file": (name, (FIXTURES / name).read_bytes())},
        )
        assert response.status_code == 200, response.text
    processing = client.post(f"{BASE}/datasets/documents/actions", json={"action_type": "process"})
    assert processing.status_code == 202, processing.text
    assert run_pending(client) == ["SUCCESS"] * 3

    [photo] = query(client, "acme/bot", "are scanned receipts searchable?", top_k=1)
    assert photo["metadata"]["source"] == "text.png"
    assert photo["metadata"]["ocr"] is True and photo["metadata"]["page"] == 1
    assert "after optical character recognition." in photo["content"]

    [scan] = query(client, "acme/bot", "who paid invoice 2041?", top_k=1)
    assert scan["metadata"]["source"] == "scanned.pdf"
    assert scan["metadata"]["ocr"] is True
    assert "Riverside Library Foundation." in scan["content"]

    [report] = query(client, "acme/bot", "efficient filing system", top_k=1)
    assert report["metadata"]["source"] == "two-column.pdf"
    assert (report["metadata"]["page"], report["metadata"]["page_label"]) == (1, "7")
    assert "proved highly efficient" in report["content"]
    assert "Annual Report of the Riverside" not in report["content"]
    assert "ocr" not in report["metadata"]
