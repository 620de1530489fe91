"""Every failure is loud: each bad input is one line on stderr, exit code 2, no traceback.

One table of bad inputs (task folders, task.toml, flags, store files), each run through the
real command line: ``cli.main(argv)`` in-process where that is faster, and a few through
``python -m aster_nb`` in a subprocess. Every case asserts the exit code, exactly one error
line naming the problem, and no traceback. Built on the ``toy`` task (milliseconds per
evaluation).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from aster_nb import cli
from aster_nb.task import BUILTIN_DIR, builtin_tasks

TOY = BUILTIN_DIR / "toy"
PROGRAM = (TOY / "initial_program.py").read_text()
EVALUATOR = (TOY / "evaluator.py").read_text()
TOML = (TOY / "task.toml").read_text()
FAST = ["--budget", "4", "--agents", "2", "--quiet"]


def toy_copy(tmp_path: Path, **files: str) -> Path:
    """A copy of the toy task with some files replaced (``task_toml`` is task.toml)."""
    root = tmp_path / "task"
    shutil.copytree(TOY, root)
    for name, text in files.items():
        (root / name.replace("_py", ".py").replace("_toml", ".toml")).write_text(text)
    return root


def edit(text: str, old: str, new: str) -> str:
    assert old in text, f"the toy task changed: {old!r} is gone"
    return text.replace(old, new, 1)


@dataclass(frozen=True)
class Case:
    """A bad input: ``argv(tmp_path)`` builds the arguments; ``expect`` is in the message."""

    argv: Callable[[Path], list[str]]
    expect: str
    # an argparse error: the usage of this subcommand ("" for the top level) comes first
    usage: str | None = None


def run_task(**files: str) -> Callable[[Path], list[str]]:
    def argv(tmp_path: Path) -> list[str]:
        return ["run", str(toy_copy(tmp_path, **files)), *FAST, "--out", str(tmp_path / "r")]

    return argv


def run_toy(*flags: str) -> Callable[[Path], list[str]]:
    return lambda tmp_path: ["run", "toy", *flags, "--out", str(tmp_path / "r")]


def toml_with(extra: str, *, replace: tuple[str, str] | None = None) -> Callable:
    text = TOML if replace is None else edit(TOML, *replace)
    return run_task(task_toml=text + extra)


CASES: dict[str, Case] = {
    # -- the task's program and evaluator --------------------------------------------------
    "markers nested (unbalanced)": Case(
        run_task(initial_program_py=edit(PROGRAM, "C = 0.0\n# EVOLVE-BLOCK-END\n", "C = 0.0\n")),
        "blocks cannot nest",
    ),
    "marker END without START": Case(
        run_task(initial_program_py=PROGRAM + "# EVOLVE-BLOCK-END\n"),
        "EVOLVE-BLOCK-END without a START",
    ),
    "marker never closed": Case(
        run_task(initial_program_py=PROGRAM + "# EVOLVE-BLOCK-START gamma\nE = 1\n"),
        "'gamma' opened at line",
    ),
    "block not described in task.toml": Case(
        run_task(initial_program_py=PROGRAM + "# EVOLVE-BLOCK-START gamma\n# EVOLVE-BLOCK-END\n"),
        "undescribed: ['gamma']",
    ),
    "declared features not returned": Case(
        run_task(evaluator_py=edit(EVALUATOR, '"features": [x["a"], x["b"]],', "")),
        "declares features ['a', 'b'] in task.toml but its evaluator returned none",
    ),
    "wrong number of features": Case(
        run_task(evaluator_py=edit(EVALUATOR, '"features": [x["a"], x["b"]]', '"features": [1]')),
        "evaluator returned 1",
    ),
    "evaluator syntax error": Case(
        run_task(evaluator_py=EVALUATOR + "\ndef broken(:\n"),
        "evaluator.py does not parse: invalid syntax (line",
    ),
    "evaluator without evaluate()": Case(
        run_task(evaluator_py=edit(EVALUATOR, "def evaluate(", "def score_file(")),
        "defines no evaluate(); expected def evaluate(program_path: str) -> dict",
    ),
    "evaluator import fails": Case(
        run_task(evaluator_py=EVALUATOR + "\nimport no_such_module_for_aster\n"),
        "does not import: ModuleNotFoundError: No module named 'no_such_module_for_aster'",
    ),
    "preload module missing": Case(
        toml_with("", replace=("preload = []", 'preload = ["no_such_module_for_aster"]')),
        "preload: module 'no_such_module_for_aster' does not import in the sandbox",
    ),
    "initial program raises": Case(
        run_task(initial_program_py=PROGRAM + "\nraise RuntimeError('boom at import')\n"),
        "fails its first evaluation: RuntimeError: boom at import",
    ),
    "initial program does not parse": Case(
        run_task(initial_program_py=edit(PROGRAM, "def solve():", "def solve(:")),
        "initial_program.py does not parse: invalid syntax (line 17)",
    ),
    "initial program times out": Case(
        run_task(
            initial_program_py=PROGRAM + "\nwhile True:\n    pass\n",
            task_toml=edit(TOML, "timeout = 10", "timeout = 0.5"),
        ),
        "timed out in its first evaluation; expected it to finish within [limits] timeout = 0.5",
    ),
    "initial program not UTF-8": Case(
        lambda tmp_path: [
            "run",
            str(_bytes(toy_copy(tmp_path) / "initial_program.py", b"X = '\xe9'\n")),
            *FAST,
        ],
        "initial_program.py is not UTF-8 text",
    ),
    "task folder without evaluator.py": Case(
        lambda tmp_path: [
            "run",
            str(_without(toy_copy(tmp_path), "evaluator.py")),
            *FAST,
        ],
        "has no evaluator.py",
    ),
    # -- task.toml ----------------------------------------------------------------------------
    "task.toml empty name": Case(
        toml_with("", replace=('name = "toy"', 'name = ""')),
        "task.toml: name must be a non-empty string, got ''",
    ),
    "task.toml syntax error": Case(toml_with("[limits\n"), "task.toml is not valid TOML"),
    "task.toml unknown key": Case(
        run_task(task_toml="targett = 1.0\n" + edit(TOML, "target = -0.01\n", "")),
        "unknown key 'targett' (did you mean 'target'?)",
    ),
    "task.toml unknown [limits] key": Case(
        toml_with("", replace=("timeout = 10", "timout = 10")),
        "unknown key [limits] 'timout' (did you mean 'timeout'?)",
    ),
    "task.toml unknown table": Case(toml_with("[sandboxx]\nnetwork = false\n"), "'sandboxx'"),
    "limit of the wrong type": Case(
        toml_with("", replace=("timeout = 10", 'timeout = "10"')),
        "[limits] timeout must be a finite number > 0, got '10'",
    ),
    "negative limit": Case(
        toml_with("", replace=("memory_mb = 1024", "memory_mb = -1")),
        "[limits] memory_mb must be a finite number > 0, got -1",
    ),
    "negative noise": Case(
        toml_with("", replace=("noise = 0.0", "noise = -1.0")),
        "noise must be a standard deviation >= 0",
    ),
    "feature bounds not numbers": Case(
        toml_with("", replace=("[-10.0, 10.0]]", '[0, "x"]]')),
        "[features] bounds must be one [low, high] pair of finite numbers",
    ),
    "feature bounds low >= high": Case(
        toml_with("", replace=("[[-10.0, 10.0]", "[[10.0, -10.0]")),
        "with low < high per name in ['a', 'b']",
    ),
    "feature bounds count": Case(
        toml_with("", replace=(", [-10.0, 10.0]]", "]")), "per name in ['a', 'b']"
    ),
    "feature bounds not a list": Case(
        toml_with("", replace=("bounds = [[-10.0, 10.0], [-10.0, 10.0]]", "bounds = 5")),
        "got 5",
    ),
    "feature descriptions leave one out": Case(
        toml_with("", replace=(', b = "constant b (optimum -1.5)"', "")),
        "[features] descriptions must describe exactly the features in names ['a', 'b']; "
        "undescribed: ['b']",
    ),
    "feature descriptions name a typo": Case(
        toml_with("", replace=('b = "constant b', 'bb = "constant b')),
        "not in names: ['bb'] (did you mean 'bb' -> 'b'?)",
    ),
    "feature descriptions not a table": Case(
        toml_with("", replace=("descriptions = {", 'descriptions = "x" # {')),
        "[features] descriptions must be a table of feature name = description, got 'x'",
    ),
    "feature description empty": Case(
        toml_with("", replace=('"constant a (optimum 3)"', '" "')),
        "[features] descriptions a must be a one-line description, got ' '",
    ),
    "record not a number": Case(
        toml_with("", replace=("record = 0.0", 'record = "zero"')),
        "record must be a finite number, got 'zero'",
    ),
    "record_source without a record": Case(
        toml_with("", replace=("record = 0.0\n", "")),
        "record_source names where a record is from; set record too",
    ),
    "sandbox env names a credential": Case(
        toml_with('[sandbox]\nenv = ["DATA_DIR", "ANTHROPIC_API_KEY"]\n'),
        "[sandbox] env names ANTHROPIC_API_KEY, which looks like a credential",
    ),
    "sandbox env bad name": Case(
        toml_with('[sandbox]\nenv = ["DATA-DIR"]\n'),
        "[sandbox] env must be environment variable names, got 'DATA-DIR'",
    ),
    "sandbox network not a bool": Case(
        toml_with('[sandbox]\nnetwork = "yes"\n'),
        "[sandbox] network must be true or false, got 'yes'",
    ),
    # -- the command line ------------------------------------------------------------------
    "unknown task name": Case(
        lambda tmp_path: ["run", "toyy", *FAST],
        f"no task 'toyy': expected a built-in name ({', '.join(builtin_tasks())}) "
        "or a path to a task folder; did you mean 'toy'?",
    ),
    "nonexistent task folder": Case(
        lambda tmp_path: ["run", str(tmp_path / "no" / "such_task"), *FAST],
        "no task folder at",
    ),
    "task path is a file": Case(
        lambda tmp_path: ["run", str(TOY / "evaluator.py"), *FAST],
        "evaluator.py is a file; expected a task folder",
    ),
    "zero budget": Case(run_toy("--budget", "0"), "--budget must be >= 1, got 0"),
    "negative budget": Case(run_toy("--budget", "-5"), "--budget must be >= 1, got -5"),
    "zero agents": Case(run_toy("--agents", "0"), "--agents must be >= 1, got 0"),
    "zero workers": Case(run_toy("--workers", "0"), "--workers must be >= 1, got 0"),
    "zero planners": Case(run_toy("--planners", "0"), "--planners must be >= 1, got 0"),
    "zero rounds": Case(run_toy("--rounds", "0"), "--rounds must be >= 1, got 0"),
    "zero seconds": Case(run_toy("--seconds", "0"), "--seconds must be finite and > 0, got 0.0"),
    "infinite seconds": Case(
        run_toy("--seconds", "inf"), "--seconds must be finite and > 0, got inf"
    ),
    "zero concurrency": Case(run_toy("--concurrency", "0"), "--concurrency must be >= 1, got 0"),
    "negative latency": Case(run_toy("--latency", "-1"), "--latency must be >= 0, got -1.0"),
    "zero max-usd": Case(run_toy("--max-usd", "0"), "--max-usd must be > 0, got 0.0"),
    "zero max-tokens": Case(run_toy("--max-tokens", "0"), "--max-tokens must be > 0, got 0"),
    "negative seed": Case(run_toy("--seed", "-1"), "--seed must be >= 0, got -1"),
    "budget below one evaluation per worker and round": Case(
        run_toy("--budget", "3", "--workers", "2", "--rounds", "2"),
        "--budget 3 is less than one evaluation per worker per round "
        "(2 rounds x 2 workers); expected --budget >= 4",
    ),
    "--out names a file": Case(
        lambda tmp_path: ["run", "toy", *FAST, "--out", str(_file(tmp_path / "out.txt"))],
        "out.txt is a file; expected a folder",
    ),
    "--out under a file": Case(
        lambda tmp_path: ["run", "toy", *FAST, "--out", str(_file(tmp_path / "f") / "runs")],
        "cannot create the folder",
    ),
    # argparse's errors; no flag is ever taken for a longer one it begins (allow_abbrev)
    "abbreviated flag --worker": Case(
        run_toy("--worker", "2"), "unrecognized arguments: --worker 2", usage="run"
    ),
    "abbreviated flag --worker=2": Case(
        run_toy("--worker=2"), "unrecognized arguments: --worker=2", usage="run"
    ),
    "abbreviated flag --budg": Case(
        run_toy("--budg", "3"), "unrecognized arguments: --budg 3", usage="run"
    ),
    "abbreviated flag --max (of --max-usd, --max-tokens)": Case(
        run_toy("--max", "3"), "unrecognized arguments: --max 3", usage="run"
    ),
    "abbreviated flag --quie": Case(
        run_toy("--quie"), "unrecognized arguments: --quie", usage="run"
    ),
    "misspelled flag": Case(
        run_toy("--agnets", "2"), "unrecognized arguments: --agnets", usage="run"
    ),
    "unknown archive": Case(run_toy("--archive", "map"), "invalid choice: 'map'", usage="run"),
    "budget not a number": Case(
        run_toy("--budget", "ten"), "invalid int value: 'ten'", usage="run"
    ),
    "flag without its value": Case(
        run_toy("--budget"), "argument --budget: expected one argument", usage="run"
    ),
    "run without a task": Case(
        lambda tmp_path: ["run", "--budget", "4"],
        "the following arguments are required: task",
        usage="run",
    ),
    "no subcommand": Case(
        lambda tmp_path: [], "the following arguments are required: {tasks,run,resume}", usage=""
    ),
    "unknown subcommand": Case(
        lambda tmp_path: ["runn", "toy"], "invalid choice: 'runn'", usage=""
    ),
    "abbreviated top-level flag --deb": Case(
        lambda tmp_path: ["--deb", "tasks"], "unrecognized arguments: --deb", usage="tasks"
    ),
    "tasks typo'd flag": Case(
        lambda tmp_path: ["tasks", "--al"], "unrecognized arguments: --al", usage="tasks"
    ),
    "resume typo'd flag": Case(
        lambda tmp_path: ["resume", str(tmp_path / "x.sqlite"), "--round", "2"],
        "unrecognized arguments: --round 2",
        usage="resume",
    ),
    "resume abbreviated flag --concur": Case(
        lambda tmp_path: ["resume", str(tmp_path / "x.sqlite"), "--concur", "2"],
        "unrecognized arguments: --concur 2",
        usage="resume",
    ),
    # -- resume ----------------------------------------------------------------------------
    "resume: missing file": Case(
        lambda tmp_path: ["resume", str(tmp_path / "missing.sqlite")], "no run store at"
    ),
    "resume: a folder": Case(lambda tmp_path: ["resume", str(tmp_path)], "is not a file"),
    "resume: empty file": Case(
        lambda tmp_path: ["resume", str(_file(tmp_path / "empty.sqlite", b""))],
        "empty.sqlite is empty (0 bytes)",
    ),
    "resume: random bytes": Case(
        lambda tmp_path: ["resume", str(_file(tmp_path / "r.sqlite", os.urandom(4096)))],
        "r.sqlite is not an SQLite database",
    ),
    "resume: a text file": Case(
        lambda tmp_path: ["resume", str(_file(tmp_path / "notes.txt", b"a note\n"))],
        "notes.txt is not an SQLite database",
    ),
    "resume: negative rounds": Case(
        lambda tmp_path: ["resume", str(tmp_path / "x.sqlite"), "--rounds", "-1"],
        "--rounds must be >= 0, got -1",
    ),
    "resume: zero concurrency": Case(
        lambda tmp_path: ["resume", str(tmp_path / "x.sqlite"), "--concurrency", "0"],
        "--concurrency must be >= 1, got 0",
    ),
}


def _file(path: Path, data: bytes = b"x\n") -> Path:
    path.write_bytes(data)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path.parent


def _without(root: Path, name: str) -> Path:
    (root / name).unlink()
    return root


def assert_one_error_line(code: int, err: str, expect: str, *, usage: str | None = None) -> None:
    assert "Traceback" not in err, err
    assert code == 2, f"exit code {code}, stderr: {err}"
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1 and errors[0] == lines[-1], f"expected one error line: {err}"
    assert errors[0].startswith("aster_nb: error: "), err
    assert expect in errors[0], f"{expect!r} not in {errors[0]!r}"
    if usage is not None:  # argparse's own errors: that subcommand's usage, then the error
        head = f"usage: python -m aster_nb {usage} " if usage else "usage: python -m aster_nb ["
        assert lines[0].startswith(head), f"expected the usage of {usage or 'the top level'}: {err}"
    else:
        assert lines == [errors[0]], err


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = CASES[name]
    argv = case.argv(tmp_path)
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert_one_error_line(code, err, case.expect, usage=case.usage)
    assert out == "", "no JSON line for a run that did not happen"
    if argv[:1] == ["run"]:
        stores = list((tmp_path / "r").glob("*.sqlite*")) if (tmp_path / "r").is_dir() else []
        assert stores == [], f"a run that never started left {stores}"


# -- resume of real, damaged and foreign stores ------------------------------------------


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished toy run's store (made once for the module)."""
    out = tmp_path_factory.mktemp("real")
    code = cli.main(["run", "toy", *FAST, "--out", str(out)])
    assert code == 0
    (store,) = out.glob("*.sqlite")
    return store


def _resume(store: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["resume", str(store), "--rounds", "1", "--quiet"])
    return code, capsys.readouterr().err


def test_resume_of_a_truncated_store(
    real_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = real_store.read_bytes()
    for keep in (0.5, 0.95):  # a lost tail and a lost last page
        store = _file(tmp_path / f"cut{keep}.sqlite", data[: int(len(data) * keep)])
        code, err = _resume(store, capsys)
        assert_one_error_line(code, err, "is damaged")
        assert "truncated or corrupted" in err


def test_resume_of_an_unrelated_sqlite_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "contacts.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE people (name TEXT, phone TEXT)")
        db.execute("INSERT INTO people VALUES ('Ada', '555-0100')")
    db.close()
    before = path.read_bytes()
    code, err = _resume(path, capsys)
    assert_one_error_line(code, err, "is an SQLite database but not an aster_nb run")
    assert path.read_bytes() == before, "the rejected file was written to"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["contacts.sqlite"], "no side files"


def test_resume_of_a_store_from_another_version(
    real_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "newer.sqlite"
    shutil.copy(real_store, store)
    with sqlite3.connect(store) as db:
        (raw,) = db.execute("SELECT value FROM meta WHERE key='run'").fetchone()
        cfg = {**json.loads(raw), "warp_drive": True}
        db.execute("UPDATE meta SET value=? WHERE key='run'", (json.dumps(cfg),))
    db.close()
    code, err = _resume(store, capsys)
    assert_one_error_line(code, err, "written by another aster_nb version: unknown run settings")
    assert "['warp_drive']" in err


def test_resume_of_a_store_whose_task_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = toy_copy(tmp_path)
    assert cli.main(["run", str(task), *FAST, "--out", str(tmp_path / "r")]) == 0
    (store,) = (tmp_path / "r").glob("*.sqlite")
    capsys.readouterr()
    shutil.rmtree(task)
    code, err = _resume(store, capsys)
    assert_one_error_line(code, err, "cannot load the run's task: no task folder at")


def test_real_store_still_resumes(real_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["resume", str(real_store), "--rounds", "1", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["rounds"] == 2


# -- through the real entry point ------------------------------------------------------


def _python_m(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aster_nb", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "name", ["initial program raises", "abbreviated flag --worker", "resume: random bytes"]
)
def test_python_m_reports_one_line(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    r = _python_m(*case.argv(tmp_path), cwd=tmp_path)
    assert_one_error_line(r.returncode, r.stderr, case.expect, usage=case.usage)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    r = _python_m("run", "toyy", "--debug", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr and "TaskError" in r.stderr


# -- what is not an error, and the sandbox's warning -------------------------------------


def test_invalid_initial_program_is_repaired_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The evaluator calling the start program invalid is no error: agents repair it."""
    task = toy_copy(tmp_path, initial_program_py=edit(PROGRAM, '"d": D}', '"d": "D"}'))
    code = cli.main(["run", str(task), *FAST, "--out", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err.splitlines() == [
        "aster_nb: warning: the initial program is invalid ('d' must be a number, got 'D'); "
        "the first agents will try to repair it"
    ]
    assert json.loads(out)["initial_score"] is None


def test_isolation_is_recorded_and_its_warning_printed_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aster_nb.sandbox import LocalExecutor
    from aster_nb.store import Store

    warning = "sandbox isolation is degraded (test): programs can read your files"
    monkeypatch.setattr(
        LocalExecutor, "isolation_warning", property(lambda self: warning), raising=False
    )
    code = cli.main(["run", "toy", *FAST, "--rounds", "2", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err.splitlines() == [f"aster_nb: warning: {warning}"], "once, even with --quiet"
    summary = json.loads(out)
    assert {"isolation", "network"} <= set(summary) and summary["isolation"] is not None
    with Store(summary["store"]) as store:
        assert store.meta("isolation") == summary["isolation"]
        assert store.meta("network") == summary["network"]


def test_status_line_shows_the_sandbox_warning() -> None:
    from aster_nb.run import RunStatus
    from aster_nb.ui.status import status_html

    s = RunStatus(state="running", round=1, evaluations=3, attempts_per_s=1.0, best_score=None)
    assert "aster-status-sandbox" not in status_html(s)
    shown = status_html(s, warning="no <bubblewrap>")
    assert 'class="aster-status-sandbox"' in shown and "no &lt;bubblewrap&gt;" in shown
