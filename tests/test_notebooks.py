"""Every notebook runs top to bottom in a real kernel, and is committed without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_offline(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit without outputs"
    )
    # No key: the notebook must explain and fall back, not fail (the kernel inherits this env).
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    if path.name == "claude.ipynb":
        assert "ANTHROPIC_API_KEY is not set" in text and "spent" in text
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, os.listdir(Path(__file__).resolve().parents[1] / "notebooks")
