"""Every notebook runs top to bottom in a real kernel, and is committed without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from aster_nb.tasks.optimizer_search import text_data

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_offline(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit without outputs"
    )
    assert "widgets" not in nb.metadata, "commit without widget state"
    # After the last cell: stop every run still going in the background and fail on any run
    # that failed out of sight (a background task's exception is not a cell error).
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "from aster_nb.run import settle\n"
            "_failed = await settle()\n"
            "assert not _failed, f'background runs failed: {_failed}'\n"
            "print('settled')"
        )
    )
    # No key: the notebook must explain and fall back, not fail (the kernel inherits this env).
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    # the task notebooks read shared data; the kernel (and its sandboxes) inherit the path
    if path.name == "protein.ipynb":
        request.getfixturevalue("proteingym")  # exports ASTER_PROTEINGYM, prepares the cache
    if path.name == "optimizer.ipynb":
        monkeypatch.setenv(text_data.ENV_DATA, str(text_data.data_dir()))
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "settled" in text
    if path.name == "claude.ipynb":
        assert "ANTHROPIC_API_KEY is not set" in text and "spent" in text
    if path.name == "protein.ipynb":
        assert "68 training assays;" in text and "held-out" in text
    if path.name == "optimizer.ipynb":
        assert "AdamW lr 1e-2: validation loss" in text and "validation loss: initial" in text
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, os.listdir(Path(__file__).resolve().parents[1] / "notebooks")
