from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aster_nb.sandbox import LocalExecutor
from aster_nb.task import Task


def write_task(root: Path, *, program: str, evaluator: str, toml: str) -> Task:
    """A task folder made for one test."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "initial_program.py").write_text(textwrap.dedent(program))
    (root / "evaluator.py").write_text(textwrap.dedent(evaluator))
    (root / "task.toml").write_text(textwrap.dedent(toml))
    (root / "README.md").write_text("A task made by a test.\n")
    return Task.load(root)


@pytest.fixture
def toy() -> Task:
    return Task.load("toy")


@pytest.fixture
async def toy_executor(toy: Task) -> AsyncIterator[LocalExecutor]:
    async with LocalExecutor.from_task(toy, concurrency=2) as ex:
        yield ex
