"""A protein_scoring program that tries every way to the labels it can think of.

``tests/test_protein.py`` runs it against the real evaluator (every channel must fail)
and against a deliberately weak one (the channels must work, so the test can fail). Each
channel prints ``channel NAME: ok`` or ``channel NAME: failed (why)`` once; the program
returns the labels it found, else zeros.
"""

import gc
import io
import os
import sys

import numpy as np

REPORT = {}
_SEEN = {}


def _note(channel, ok, detail=""):
    if channel not in REPORT:
        REPORT[channel] = "ok" if ok else f"failed ({detail})"
        print(f"channel {channel}: {REPORT[channel]}", flush=True)


def _evaluator(v):
    return sys.modules[type(v).__module__]  # the module that defined the Variants class


def _slice(v):
    ev = _evaluator(v)
    i = next(k for k, x in enumerate(ev.VARIANTS) if x is v)
    return ev.ASSAYS[i]["offset"], ev.ASSAYS[i]["offset"] + ev.ASSAYS[i]["n"]


def _is_labels(x, v):
    return isinstance(x, np.ndarray) and x.dtype == np.float64 and x.shape == (_evaluator(v).TOTAL,)


def open_cache(v):
    with open(os.path.join(_evaluator(v).CACHE, "labels.npz"), "rb") as f:
        a, b = _slice(v)
        return np.load(io.BytesIO(f.read()))["scores"][a:b]


def open_csv(v):
    if "csv" not in _SEEN:  # every assay file, keyed by (its size, mutant)
        data = os.path.join(os.environ.get("ASTER_PROTEINGYM") or str(_evaluator(v).DATA), "dms")
        table = _SEEN["csv"] = {}
        for name in sorted(os.listdir(data)):
            with open(os.path.join(data, name)) as f:
                rows = [line.strip().split(",") for line in f][1:]
            table.update({(len(rows), r[0]): float(r[1]) for r in rows})
    return np.array([_SEEN["csv"].get((len(v.mutants), m), 0.0) for m in v.mutants])


def inherited_fd(v):
    for fd in range(3, 1024):
        try:
            data = os.pread(fd, 1 << 26, 0)
        except OSError:
            continue
        if data[:2] == b"PK":
            a, b = _slice(v)
            return np.load(io.BytesIO(data))["scores"][a:b]
    raise LookupError("no readable descriptor")


def _first(values, v):
    for value in values:
        if _is_labels(value, v):
            a, b = _slice(v)
            return value[a:b]
    raise LookupError("nothing like the labels")


def frames(v):
    f, seen = sys._getframe(), []
    while f is not None:
        seen += [*f.f_locals.values(), *f.f_globals.values()]
        f = f.f_back
    return _first(seen, v)


def collector(v):
    gc.unfreeze()  # the sandbox server froze what it loaded; look there too
    seen = []
    for obj in gc.get_objects():
        if isinstance(obj, dict):
            seen += list(obj.values())
        elif isinstance(obj, (list, tuple)):
            seen += list(obj)
    return _first(seen, v)


def module_globals(v):
    return _first([x for m in list(sys.modules.values()) for x in vars(m).values()], v)


def subprocess_cat(v):
    import subprocess

    subprocess.run(["cat", "/dev/null"], check=True, capture_output=True)
    raise LookupError("a process started, but cat cannot know which file holds the labels")


def score_variants(v):
    found = None
    for channel in (open_cache, open_csv, inherited_fd, frames, collector, module_globals):
        try:
            got = channel(v)
        except Exception as e:
            _note(channel.__name__, False, type(e).__name__)
        else:
            _note(channel.__name__, True)
            found = got if found is None else found
    try:
        subprocess_cat(v)
    except LookupError:
        _note("subprocess", True)
    except Exception as e:
        _note("subprocess", False, type(e).__name__)
    return found if found is not None else np.zeros(len(v.mutants))
