"""environment.yml and pyproject.toml must list the same dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict[str, str]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(cfg["dependencies"]) + [
        r for extra in cfg["optional-dependencies"].values() for r in extra
    ]
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment() -> dict[str, str]:
    out = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("dependencies:") :].splitlines():
        m = re.match(r"^\s*-\s+([A-Za-z0-9_.\-\[\]]+[^#\s]*)\s*$", line)
        if not m or line.strip().endswith(":"):
            continue
        req = m.group(1)
        if req in ("pip", "-e") or req.startswith(("python=", "-")):
            continue
        out[_name(req)] = req.replace(" ", "")
    return out


def test_environment_matches_pyproject() -> None:
    py, env = _pyproject(), _environment()
    assert set(py) == set(env), (
        f"only in pyproject: {sorted(set(py) - set(env))}; only in environment.yml: {sorted(set(env) - set(py))}"
    )
    # Same version constraints (conda writes '=' where pip writes '==' only for python).
    for name, req in py.items():
        assert req == env[name], (
            f"{name}: pyproject says {req!r}, environment.yml says {env[name]!r}"
        )


def test_torch_is_pinned_to_the_cpu_wheel() -> None:
    assert _pyproject()["torch"] == "torch==2.13.0"
    makefile = (ROOT / "Makefile").read_text()
    # torch must be installed before the package, or pip resolves a CUDA build.
    assert makefile.index("torch==2.13.0") < makefile.index("pip install --quiet -e")
