"""environment.yml and pyproject.toml must list the same dependencies."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import setuptools

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


# -- the widgets' front end ships in the wheel --------------------------------------------

FRONT_END = ("handoffs.js", "handoffs.css", "figure.js", "dashboard.css")
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*.sqlite*"
)


def test_the_package_list_names_every_package() -> None:
    # pyproject lists packages explicitly (widgets/ is mapped to aster_nb.ui.assets), so a
    # new subpackage left out of the list would silently not ship.
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        p
        for p in setuptools.find_namespace_packages(where=str(ROOT), include=["aster_nb*"])
        if "__pycache__" not in p
    }
    assert set(cfg["packages"]) == found | {"aster_nb.ui.assets"}, (
        f"add to [tool.setuptools] packages: {sorted(found - set(cfg['packages']))}"
    )
    assert cfg["package-dir"] == {"aster_nb.ui.assets": "widgets"}


def test_the_wheel_ships_the_widgets_front_end(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)  # builds write build/ into the tree
    out = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (wheel,) = out.glob("aster_nb-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for name in FRONT_END:
            shipped = z.read(f"aster_nb/ui/assets/{name}").decode()
            assert shipped == (ROOT / "widgets" / name).read_text(), name
        assert "aster_nb/ui/assets/__init__.py" in names
        assert {"aster_nb/ui/__init__.py", "aster_nb/ui/handoffs.py"} <= names
        assert "aster_nb/ui/assets/README.md" not in names


def test_an_editable_install_finds_the_widgets_front_end(tmp_path: Path) -> None:
    # setuptools' editable finder maps aster_nb.ui.assets to widgets/; import through it in
    # a fresh interpreter whose only aster_nb is that editable install (of a copy).
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    out = tmp_path / "editable"
    subprocess.run(
        [sys.executable, "-c",
         f"from setuptools import build_meta; build_meta.build_editable({str(out)!r})"],
        cwd=src, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    site_dir = tmp_path / "site"
    (wheel,) = out.glob("*.whl")
    zipfile.ZipFile(wheel).extractall(site_dir)
    probe = (
        "import site, sys\n"
        f"site.addsitedir({str(site_dir)!r})\n"
        f"sys.path.append({sysconfig.get_paths()['purelib']!r})  # numpy, ipywidgets, ...\n"
        "import aster_nb\n"
        "from aster_nb.ui.frontend import asset\n"
        "from importlib import resources\n"
        "print(aster_nb.__file__)\n"
        "print(resources.files('aster_nb.ui.assets'))\n"
        "print(len(asset('handoffs.js')))\n"
    )
    r = subprocess.run(
        [sys.executable, "-S", "-c", probe], cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    package, assets, size = r.stdout.split()
    assert Path(package).is_relative_to(src), "the probe must import the editable copy"
    assert Path(assets) == src / "widgets"
    assert int(size) == len((ROOT / "widgets" / "handoffs.js").read_text())


def test_the_core_never_imports_notebook_libraries() -> None:
    # Everything but aster_nb.ui and aster_nb.figures must work without ipywidgets/plotly.
    probe = (
        "import importlib, pkgutil, sys\n"
        "skip = ('aster_nb.ui', 'aster_nb.figures', 'aster_nb.tasks')\n"
        "todo = ['aster_nb']\n"
        "while todo:  # not pkgutil.walk_packages: it imports every package it recurses into\n"
        "    mod = importlib.import_module(todo.pop())\n"
        "    for m in pkgutil.iter_modules(getattr(mod, '__path__', []), mod.__name__ + '.'):\n"
        "        if not m.name.startswith(skip) and not m.name.endswith('__main__'):\n"
        "            todo.append(m.name)\n"
        "bad = sorted(n for n in sys.modules\n"
        "             if n.split('.')[0] in ('ipywidgets', 'plotly', 'anywidget', 'traitlets'))\n"
        "print(len([n for n in sys.modules if n.startswith('aster_nb.')]), bad)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    count, bad = r.stdout.split(" ", 1)
    assert int(count) > 20, "the probe imported the core modules"
    assert bad.strip() == "[]", f"the core imported {bad.strip()}"
