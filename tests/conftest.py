from __future__ import annotations

import os
import sys
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


PROTEIN_TASK = Path(__file__).resolve().parents[1] / "aster_nb" / "tasks" / "protein_scoring"


@pytest.fixture(scope="session")
def proteingym() -> Path:
    """The ProteinGym folder, exported as ``ASTER_PROTEINGYM`` so that sandboxes and CLI runs
    started by the tests find it, with its cache prepared once (in a subprocess, so this
    process never starts ``datasets``' threads). ``$ASTER_PROTEINGYM``, else
    ``<repo>/../shared/data/proteingym``; ``.ci/run`` points CI's clones at the shared copy.
    Missing data fails the test: it is never a reason to skip."""
    sys.path.insert(0, str(PROTEIN_TASK))
    import protein_data

    try:
        data = protein_data.data_dir()
    except protein_data.DataMissing as e:
        missing = str(e)
    else:
        missing = ""
    if missing:
        pytest.fail(missing, pytrace=False)
    os.environ[protein_data.ENV_DATA] = str(data)
    protein_data.ensure_cache(data, subprocess_build=True)
    return data


# -- what some tests need from the machine ------------------------------------------------------

# Set by `make test` (and so by CI): a browser test that cannot run fails, naming what is
# missing, instead of skipping; a skip there would let a broken dashboard or export pass.
REQUIRE_BROWSER = "ASTER_REQUIRE_BROWSER"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "browser(playwright=False): needs Debian's chromium (and Playwright when asked); "
        f"skipped when missing, failed under {REQUIRE_BROWSER}=1 (make test, CI)",
    )


def browser_missing(*, playwright: bool) -> list[str]:
    """What a browser test lacks on this machine, each as what to do about it."""
    import importlib.util
    import shutil

    missing = []
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        missing.append(
            "chromium is not on PATH (Debian: apt-get install chromium; `make test` installs "
            "it when run as root)"
        )
    if playwright and importlib.util.find_spec("playwright") is None:
        missing.append(
            "playwright is not installed (it is in the dev extra: pip install -e '.[dev]')"
        )
    return missing


def pytest_runtest_setup(item: pytest.Item) -> None:
    mark = item.get_closest_marker("browser")
    if mark is None:
        return
    missing = browser_missing(playwright=bool(mark.kwargs.get("playwright", False)))
    if not missing:
        return
    if os.environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"{REQUIRE_BROWSER}=1 and " + "; ".join(missing), pytrace=False)
    pytest.skip("; ".join(missing))
