"""The text of ``optimizer_search``: where it is, how it is loaded (with ``datasets``, from a
local file, nothing downloaded), the fixed train/validation split and the cache the
evaluator reads.

The data folder (``ASTER_TEXT_DATA``; default ``<repo>/../shared/data/text``) holds
``tinyshakespeare.txt`` (1,115,394 characters, 65 distinct). The split is nanoGPT's: the
first 90% of the characters train, the last 10% validate.

The cache (``ASTER_TEXT_CACHE``; default ``~/.cache/aster_nb/text``) keeps one folder per
version of the file, with ``train.npy`` and ``valid.npy`` (uint8 character indices) and
``vocab.json``; the two splits live in separate files so that the evaluator can load the
validation split only after a program's training is over (see ``evaluator.py``). A sandbox
server that finds no cache builds one in a subprocess at start, so the threads ``datasets``
starts never exist in the process that forks evaluations.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from aster_nb import datacache

ENV_DATA = "ASTER_TEXT_DATA"
ENV_CACHE = "ASTER_TEXT_CACHE"
FILE = "tinyshakespeare.txt"
VERSION = 1
TRAIN_FRACTION = 0.9


class DataMissing(FileNotFoundError):
    """The text file is not where it was looked for."""


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def data_dir(path: str | Path | None = None) -> Path:
    """The text folder: ``path``, else ``$ASTER_TEXT_DATA``, else ``<repo>/../shared/data/text``.

    Raises:
        DataMissing: no ``tinyshakespeare.txt`` there, naming the variable to set.
    """
    where = "given" if path else (f"${ENV_DATA}" if os.environ.get(ENV_DATA) else "default")
    p = Path(path or os.environ.get(ENV_DATA) or repo_root().parent / "shared/data/text")
    if not (p / FILE).is_file():
        raise DataMissing(
            f"text data not found at {p} ({where}): expected {FILE} there; "
            f"set {ENV_DATA} to the folder that holds it"
        )
    return p.resolve()


def cache_root() -> Path:
    """``$ASTER_TEXT_CACHE``, else ``~/.cache/aster_nb/text`` (:mod:`aster_nb.datacache`)."""
    return datacache.user_cache("text", ENV_CACHE)


def load_text(data: str | Path | None = None) -> str:
    """The whole file, read with ``datasets`` (one document, local only)."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # local files only: never the hub
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory(prefix="aster-text-") as tmp:
        ds = datasets.load_dataset(
            "text",
            data_files=str(data_dir(data) / FILE),
            sample_by="document",
            keep_in_memory=True,
            cache_dir=tmp,
        )["train"]
    return ds[0]["text"]


def build(data: Path, out: Path) -> None:
    """Write the cache for the file in ``data`` into the folder ``out``."""
    text = load_text(data)
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    tokens = np.fromiter((index[c] for c in text), dtype=np.uint8, count=len(text))
    cut = int(TRAIN_FRACTION * len(tokens))
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "train.npy", tokens[:cut])
    np.save(out / "valid.npy", tokens[cut:])
    (out / "vocab.json").write_text(json.dumps({"vocab": vocab, "chars": len(text)}))


def cache_key(data: Path) -> str:
    """Changes when the file changes (size, modification time)."""
    st = (data / FILE).stat()
    return hashlib.sha256(f"v{VERSION}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]


def ensure_cache(data: Path, *, root: Path | None = None, subprocess_build: bool = False) -> Path:
    """The cache folder for ``data``, built first if missing: under ``root`` (default
    :func:`cache_root`), or a temporary folder when that is not writable (the sandbox's
    read-only filesystem). ``subprocess_build`` builds in a child process."""
    root = cache_root() if root is None else root
    return datacache.ensure_built(
        root / f"v{VERSION}-{cache_key(data)}",
        marker="vocab.json",
        data=data,
        build=build,
        script=__file__ if subprocess_build else None,
        what="the text cache",
        timeout=600,
    )


def vocab_size(cache: Path) -> int:
    return len(json.loads((cache / "vocab.json").read_text())["vocab"])


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"] and len(argv) == 3:
        build(Path(argv[1]), Path(argv[2]))
        return 0
    if argv[:1] == ["prepare"] and len(argv) <= 2:
        print(ensure_cache(data_dir(argv[1] if len(argv) == 2 else None)))
        return 0
    print("usage: text_data.py prepare [DATA_DIR]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
