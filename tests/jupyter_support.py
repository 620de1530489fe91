"""JupyterLab and Chromium for the browser test: local only, bounded lifetime, clean teardown."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Playwright's own browser download cannot work offline: always Debian's chromium, headless.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# However the test ends (even if pytest itself is killed), the server is gone after this.
SERVER_LIFETIME_S = 600


def chromium_path() -> str | None:
    """The chromium executable on PATH (Debian's package), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True, slots=True)
class Lab:
    """A running JupyterLab server."""

    url: str  # http://127.0.0.1:PORT
    token: str
    root: Path
    log: Path

    def api(self, method: str, path: str, body: dict | None = None) -> object:
        """Call the server's REST API; returns the decoded JSON (None for an empty reply)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def shutdown_kernels(self) -> None:
        """Shut down every kernel of the server (they run in their own sessions)."""
        for k in self.api("GET", "/api/kernels") or []:
            with contextlib.suppress(urllib.error.URLError, OSError):
                self.api("DELETE", f"/api/kernels/{k['id']}")

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"


@contextlib.contextmanager
def jupyter_lab(root: Path, *, startup_timeout: float = 90.0) -> Iterator[Lab]:
    """Start ``jupyter lab`` on 127.0.0.1 serving ``root``; stop it (and its kernels) on exit."""
    port, token = free_port(), secrets.token_hex(16)
    home = root.parent / f"{root.name}-jupyter-home"
    for sub in ("config", "data", "runtime", "settings", "workspaces"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    # No news toast (it would cover the notebook in screenshots and asks for network).
    notif = home / "settings" / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True, exist_ok=True)
    (notif / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {
        **os.environ,
        # Private config/data/runtime dirs: no user settings, workspaces or kernels leak in.
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("ANTHROPIC_API_KEY", None)  # the notebook must run on the offline model
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False",
        f"--LabApp.user_settings_dir={home / 'settings'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
        # No network: no news feed, no update check.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        # Belts and braces on top of the teardown: idle kernels are culled, an idle server exits.
        "--ServerApp.shutdown_no_activity_timeout=300",
        "--MappingKernelManager.cull_idle_timeout=300",
        "--MappingKernelManager.cull_interval=30",
        "--MappingKernelManager.cull_connected=True",
    ]
    if os.geteuid() == 0:  # CI runs as root in a throwaway container
        cmd.append("--allow-root")
    if timeout := shutil.which("timeout"):
        cmd = [timeout, "--kill-after=10", str(SERVER_LIFETIME_S), *cmd]
    log = home / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # one process group to stop
        )
    lab = Lab(url=f"http://127.0.0.1:{port}", token=token, root=root, log=log)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited with code {proc.returncode} before answering on "
                    f"{lab.url}:\n{lab.log_tail()}"
                )
            try:
                lab.api("GET", "/api/status")
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"jupyter lab did not answer /api/status on {lab.url} within "
                        f"{startup_timeout:.0f} s:\n{lab.log_tail()}"
                    ) from None
                time.sleep(0.25)
        yield lab
    finally:
        with contextlib.suppress(urllib.error.URLError, OSError):
            lab.shutdown_kernels()
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the server then shuts its kernels down), SIGKILL after a grace period."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def write_notebook(root: Path, name: str, cells: Sequence[str]) -> Path:
    """A notebook of ``cells`` (code) at ``root / name``, on the python3 kernel."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = root / name
    nbformat.write(nb, path)
    return path


@contextlib.contextmanager
def notebook_lab(tmp_path: Path, name: str, cells: Sequence[str]) -> Iterator[Lab]:
    """A JupyterLab serving a fresh folder with one notebook of ``cells``."""
    root = tmp_path / "lab"
    root.mkdir()
    write_notebook(root, name, cells)
    with jupyter_lab(root) as server:
        yield server


def wait_kernel_connected(lab: Lab, notebook: str, timeout: float = 60.0) -> None:
    """Until the notebook's kernel is idle with the page's websocket attached: before that,
    Run All can reach a kernel that is still starting and the cells are lost."""
    deadline = time.monotonic() + timeout
    seen: object = None
    while time.monotonic() < deadline:
        try:
            seen = lab.api("GET", "/api/sessions")
        except (urllib.error.URLError, OSError) as e:
            seen = e
        for s in seen if isinstance(seen, list) else []:
            k = s.get("kernel") or {}
            if (
                s.get("path") == notebook
                and k.get("execution_state") == "idle"
                and k.get("connections", 0) >= 1
            ):
                return
        time.sleep(0.25)
    raise AssertionError(
        f"the kernel of {notebook} was not idle and connected within {timeout:.0f} s; "
        f"sessions: {seen}\n{lab.log_tail()}"
    )


def run_all_cells(page: Any, lab: Lab, notebook: str) -> None:
    """Open ``notebook`` in the Playwright ``page``, wait for its kernel, Run All Cells."""
    page.goto(f"{lab.url}/lab/tree/{notebook}?token={lab.token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    wait_kernel_connected(lab, notebook)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


@contextlib.contextmanager
def lab_page(
    lab: Lab, *, viewport: tuple[int, int] = (1400, 1600), timeout_ms: int = 60_000
) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A headless Chromium page for ``lab``: ``(page, page errors, console errors)``.

    On the way out the lab's kernels are shut down before the browser closes: a kernel
    runs in its own session, so the run in it ends with it, not with the page.
    """
    from playwright.sync_api import sync_playwright

    page_errors: list[str] = []
    console_errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        page.set_default_timeout(timeout_ms)
        page.on("pageerror", lambda e: page_errors.append(f"{e.name}: {e.message}"))
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        try:
            yield page, page_errors, console_errors
        finally:
            try:
                lab.shutdown_kernels()
            finally:
                browser.close()
