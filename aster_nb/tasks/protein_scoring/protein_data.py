"""ProteinGym's single-substitution assays for ``protein_scoring``: where they are, how they
are loaded (with ``datasets``, from a local folder, nothing downloaded), the fixed
train/held-out split, and the cache the evaluator reads.

The data folder (``ASTER_PROTEINGYM``; default ``<repo>/../shared/data/proteingym``) holds
``dms/ASSAY.csv`` (``mutant,score``), ``reference/DMS_substitutions.csv`` (ProteinGym's
reference file), the EVE alignments in ``msa/`` and the ESM-1v scores of BLAT_ECOLX.

The cache (``ASTER_PROTEINGYM_CACHE``; default ``~/.cache/aster_nb/proteingym``) keeps one
folder per version of the data, in two parts that are never read together:

* ``inputs.npz`` and ``meta.json``: what a zero-shot method may see — each assay's
  wild-type sequence, its variants (position, wild-type and mutant residue, sorted by
  position and mutant residue, never in the file's order) and the profiles
  (:mod:`protein_profiles`). The evaluator loads these once per sandbox server;
* ``labels.npz``: the measured scores in the same order, read only after the program's
  predictions are in (see ``evaluator.py``).

Build it once with ``python aster_nb/tasks/protein_scoring/protein_data.py prepare`` (about
half a minute; the alignment weights are most of it). A sandbox server that finds no cache
builds one itself, in a subprocess, at start.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protein_profiles  # next to this file, in the sandbox as in tests

ENV_DATA = "ASTER_PROTEINGYM"
ENV_CACHE = "ASTER_PROTEINGYM_CACHE"
VERSION = 1
ALPHABET = protein_profiles.ALPHABET
#: file stems of ProteinGym v0.1 (the data folder) -> ProteinGym v1 DMS ids (the reference)
ALIASES = {
    "A0A140D2T1_ZIKV_Sourisseau_growth_2019": "A0A140D2T1_ZIKV_Sourisseau_2019",
    "A4D664_9INFA_Soh_CCL141_2019": "A4D664_9INFA_Soh_2019",
    "A4_HUMAN_Seuma_2021": "A4_HUMAN_Seuma_2022",
    "B3VI55_LIPST_Klesmith_2015": "LGK_LIPST_Klesmith_2015",
    "CAPSD_AAV2S_Sinai_substitutions_2021": "CAPSD_AAV2S_Sinai_2021",
    "CP2C9_HUMAN_Amorosi_abundance_2021": "CP2C9_HUMAN_Amorosi_2021_abundance",
    "CP2C9_HUMAN_Amorosi_activity_2021": "CP2C9_HUMAN_Amorosi_2021_activity",
    "DYR_ECOLI_Thompson_plusLon_2019": "DYR_ECOLI_Thompson_2019",
    "GCN4_YEAST_Staller_induction_2018": "GCN4_YEAST_Staller_2018",
    "MTH3_HAEAE_Rockah-Shmuel_2015": "MTH3_HAEAE_RockahShmuel_2015",
    "NRAM_I33A0_Jiang_standard_2016": "NRAM_I33A0_Jiang_2016",
    "P53_HUMAN_Giacomelli_NULL_Etoposide_2018": "P53_HUMAN_Giacomelli_2018_Null_Etoposide",
    "P53_HUMAN_Giacomelli_NULL_Nutlin_2018": "P53_HUMAN_Giacomelli_2018_Null_Nutlin",
    "P53_HUMAN_Giacomelli_WT_Nutlin_2018": "P53_HUMAN_Giacomelli_2018_WT_Nutlin",
    "R1AB_SARS2_Flynn_growth_2022": "R1AB_SARS2_Flynn_2022",
    "RL401_YEAST_Mavor_2016": "RL40A_YEAST_Mavor_2016",
    "RL401_YEAST_Roscoe_2013": "RL40A_YEAST_Roscoe_2013",
    "RL401_YEAST_Roscoe_2014": "RL40A_YEAST_Roscoe_2014",
    "SPIKE_SARS2_Starr_bind_2020": "SPIKE_SARS2_Starr_2020_binding",
    "SPIKE_SARS2_Starr_expr_2020": "SPIKE_SARS2_Starr_2020_expression",
    "SRC_HUMAN_Ahler_CD_2019": "SRC_HUMAN_Ahler_2019",
    "TPOR_HUMAN_Bridgford_S505N_2020": "TPOR_HUMAN_Bridgford_2020",
    "VKOR1_HUMAN_Chiasson_abundance_2020": "VKOR1_HUMAN_Chiasson_2020_abundance",
    "VKOR1_HUMAN_Chiasson_activity_2020": "VKOR1_HUMAN_Chiasson_2020_activity",
}
#: alignments (EVE's) of the proteins that have one
MSA_FILES = {
    "P53_HUMAN": "P53_HUMAN_b0.1.a2m",
    "PTEN_HUMAN": "PTEN_HUMAN_b1.0.a2m",
    "SCN5A_HUMAN": "SCN5A_HUMAN_b1.0.a2m",
}
ESM1V = ("BLAT_ECOLX", "BLAT_ECOLX_Ranganathan2015_esm1v_labeled.csv")
ESM1V_MODELS = [f"esm1v_t33_650M_UR90_{i}" for i in range(1, 6)]
_REFERENCE = "reference/DMS_substitutions.csv"


class DataMissing(FileNotFoundError):
    """The ProteinGym folder is not where it was looked for."""


def repo_root() -> Path:
    """The folder holding the ``aster_nb`` package (a checkout's root)."""
    return Path(__file__).resolve().parents[3]


def data_dir(path: str | Path | None = None) -> Path:
    """The ProteinGym folder: ``path``, else ``$ASTER_PROTEINGYM``, else
    ``<repo>/../shared/data/proteingym``.

    Raises:
        DataMissing: it has no ``dms/`` or no reference file, naming the variable to set.
    """
    where = "given" if path else (f"${ENV_DATA}" if os.environ.get(ENV_DATA) else "default")
    p = Path(path or os.environ.get(ENV_DATA) or repo_root().parent / "shared/data/proteingym")
    if not (p / "dms").is_dir() or not (p / _REFERENCE).is_file():
        raise DataMissing(
            f"ProteinGym data not found at {p} ({where}): expected dms/*.csv and "
            f"{_REFERENCE} there; set {ENV_DATA} to the folder that holds them"
        )
    return p.resolve()


def cache_root() -> Path:
    """``$ASTER_PROTEINGYM_CACHE``, else ``~/.cache/aster_nb/proteingym``
    (:mod:`aster_nb.datacache`)."""
    return datacache.user_cache("proteingym", ENV_CACHE)


def is_heldout(uniprot: str) -> bool:
    """The fixed split: a protein is held out when sha256 of its UniProt id is 0 mod 3."""
    return int(hashlib.sha256(uniprot.encode()).hexdigest(), 16) % 3 == 0


def assay_files(data: Path) -> dict[str, Path]:
    """ProteinGym v1 DMS id -> the assay's csv file in ``data/dms``."""
    return {ALIASES.get(f.stem, f.stem): f for f in sorted((data / "dms").glob("*.csv"))}


# -- loading with `datasets` ---------------------------------------------------------------


def _datasets():
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # local files only: never the hub
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def load_assays(data: str | Path | None = None, *, cache_dir: str | None = None):
    """Every assay of the data folder as a ``datasets.DatasetDict``: one split per assay,
    named by its ProteinGym v1 DMS id, with the columns ``mutant`` and ``score``."""
    ds = _datasets()
    files = assay_files(data_dir(data))
    features = ds.Features({"mutant": ds.Value("string"), "score": ds.Value("float64")})
    return ds.load_dataset(
        "csv",
        data_files={k: str(v) for k, v in files.items()},
        usecols=["mutant", "score"],
        features=features,
        cache_dir=cache_dir,
        keep_in_memory=True,
    )


def load_reference(data: str | Path | None = None, *, cache_dir: str | None = None):
    """ProteinGym's reference file as a ``datasets.Dataset`` (DMS id, UniProt id, coarse
    selection type, target sequence)."""
    ds = _datasets()
    cols = ["DMS_id", "UniProt_ID", "coarse_selection_type", "target_seq"]
    return ds.load_dataset(
        "csv",
        data_files=str(data_dir(data) / _REFERENCE),
        usecols=cols,
        cache_dir=cache_dir,
        keep_in_memory=True,
    )["train"]


def _esm1v(data: Path, cache_dir: str):
    ds = _datasets()
    return ds.load_dataset(
        "csv",
        data_files=str(data / ESM1V[1]),
        usecols=["mutant", *ESM1V_MODELS],
        cache_dir=cache_dir,
        keep_in_memory=True,
    )["train"]


# -- the cache -------------------------------------------------------------------------------


def cache_key(data: Path) -> str:
    """Changes when a file the cache is made of changes (name, size, modification time)."""
    files = [*assay_files(data).values(), data / _REFERENCE, data / ESM1V[1]]
    files += [data / "msa" / f for f in MSA_FILES.values()]
    h = hashlib.sha256(f"v{VERSION}".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def _parse(mutants: list[str], sequence: str, assay: str) -> tuple[np.ndarray, ...]:
    pos = np.empty(len(mutants), dtype=np.int32)
    wt = np.empty(len(mutants), dtype=np.uint8)
    mt = np.empty(len(mutants), dtype=np.uint8)
    for i, m in enumerate(mutants):
        a, p, b = m[0], int(m[1:-1]), m[-1]
        if a not in ALPHABET or b not in ALPHABET or not 1 <= p <= len(sequence):
            raise ValueError(f"{assay}: mutant {m!r} is not a single substitution in range")
        if sequence[p - 1] != a:
            raise ValueError(f"{assay}: mutant {m} but the wild type has {sequence[p - 1]}")
        pos[i], wt[i], mt[i] = p - 1, ALPHABET.index(a), ALPHABET.index(b)
    return pos, wt, mt


def build(data: Path, out: Path) -> None:
    """Write the cache for ``data`` into the new folder ``out`` (see the module)."""
    with tempfile.TemporaryDirectory(prefix="aster-hf-") as hf:
        assays = load_assays(data, cache_dir=hf)
        ref = {r["DMS_id"]: r for r in load_reference(data, cache_dir=hf)}
        esm = _esm1v(data, hf)
    rows, arrays, labels = [], {"positions": [], "wt": [], "mt": []}, []
    sequences: dict[str, str] = {}
    offset = 0
    for name in sorted(assays):
        if name not in ref:
            raise ValueError(f"assay {name} is not in ProteinGym's reference file")
        r = ref[name]
        seq = r["target_seq"]
        pos, wt, mt = _parse(assays[name]["mutant"], seq, name)
        order = np.lexsort((mt, pos))  # by position, then mutant residue: label-free
        score = np.asarray(assays[name]["score"], dtype=np.float64)[order]
        if not np.isfinite(score).all() or len(set(zip(pos, mt, strict=True))) != len(pos):
            raise ValueError(f"{name}: missing scores or repeated mutants")
        for key, a in (("positions", pos), ("wt", wt), ("mt", mt)):
            arrays[key].append(a[order])
        labels.append(score)
        uniprot = r["UniProt_ID"]
        # one protein may differ between assays at a polymorphic site (P53_HUMAN P72R)
        if len(sequences.setdefault(uniprot, seq)) != len(seq):
            raise ValueError(f"{name}: {uniprot} has target sequences of two lengths")
        kind = "alignment" if uniprot in MSA_FILES else "esm1v" if uniprot == ESM1V[0] else None
        rows.append(
            {
                "assay": name,
                "uniprot": uniprot,
                "sequence": seq,
                "selection_type": r["coarse_selection_type"],
                "split": "heldout" if is_heldout(uniprot) else "train",
                "offset": offset,
                "n": len(pos),
                "profile": kind,
            }
        )
        offset += len(pos)
    profiles = {
        f"profile_{u}": protein_profiles.alignment_profile(data / "msa" / f, len(sequences[u]))
        for u, f in MSA_FILES.items()
        if u in sequences
    }
    if ESM1V[0] in sequences:
        scores = np.stack([np.asarray(esm[m], dtype=np.float64) for m in ESM1V_MODELS], axis=1)
        profiles[f"profile_{ESM1V[0]}"] = protein_profiles.esm1v_profile(
            esm["mutant"], scores, sequences[ESM1V[0]]
        )
    out.mkdir(parents=True)
    np.savez(out / "inputs.npz", **{k: np.concatenate(v) for k, v in arrays.items()}, **profiles)
    np.savez(out / "labels.npz", scores=np.concatenate(labels))
    meta = {"version": VERSION, "data": str(data), "assays": rows}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))


def ensure_cache(data: Path, *, root: Path | None = None, subprocess_build: bool = False) -> Path:
    """The cache folder for ``data``, built first if missing: under ``root`` (default
    :func:`cache_root`), or a temporary folder when that is not writable (the sandbox's
    read-only filesystem). ``subprocess_build`` builds in a child process, so the threads
    ``datasets`` starts never exist in a process that forks evaluations afterwards."""
    root = cache_root() if root is None else root
    return datacache.ensure_built(
        root / f"v{VERSION}-{cache_key(data)}",
        marker="meta.json",
        data=data,
        build=build,
        script=__file__ if subprocess_build else None,
        what="the ProteinGym cache",
        timeout=1800,
    )


def read_inputs(cache: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """``meta.json`` and the arrays of ``inputs.npz`` (no labels)."""
    meta = json.loads((cache / "meta.json").read_text())
    with np.load(cache / "inputs.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"] and len(argv) == 3:
        build(Path(argv[1]), Path(argv[2]))
        return 0
    if argv[:1] == ["prepare"] and len(argv) <= 2:
        cache = ensure_cache(data_dir(argv[1] if len(argv) == 2 else None))
        print(cache)
        return 0
    print("usage: protein_data.py prepare [DATA_DIR]  (or: build DATA_DIR OUT_DIR)")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
