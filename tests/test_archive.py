"""Archives: the shared protocol, Cluster-Elites' invariants, grid re-binning, greedy."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from aster_nb.archive import (
    Archive,
    ArchiveBase,
    ClusterElites,
    Greedy,
    GridElites,
    make_archive,
)
from aster_nb.features import make_descriptor
from aster_nb.program import EvalResult, Program, Status

_counter = iter(range(10**9))


def prog(score: float, feats: tuple[float, ...] | None = (0.5, 0.5), code: str | None = None):
    """An ok program with a unique code text (so a unique id) unless ``code`` is given."""
    code = code if code is not None else f"# program {next(_counter)}\nx = {score!r}\n"
    return Program(code=code).evaluated(EvalResult(status=Status.OK, score=score), features=feats)


def failed(status: Status = Status.ERROR, feats: tuple[float, ...] | None = (0.5, 0.5)):
    code = f"raise SystemExit({next(_counter)})\n"
    return Program(code=code).evaluated(EvalResult(status=status, error="boom"), features=feats)


FACTORIES: dict[str, Callable[[], ArchiveBase]] = {
    "cluster": lambda: ClusterElites(dims=2, seed=0),
    "grid": lambda: GridElites(dims=2, bounds=[(0.0, 1.0), (0.0, 1.0)], bins=4),
    "grid-learned": lambda: GridElites(dims=2, bins=4, warmup=4),
    "greedy": lambda: Greedy(dims=2),
}


@pytest.fixture(params=list(FACTORIES))
def archive(request: pytest.FixtureRequest) -> ArchiveBase:
    return FACTORIES[request.param]()


def spread_programs(n: int, seed: int = 0) -> list[Program]:
    rng = np.random.default_rng(seed)
    return [prog(float(s), (float(x), float(y))) for s, x, y in rng.random((n, 3))]


# -- protocol, on every archive ------------------------------------------------------------


def test_empty_archive(archive: ArchiveBase) -> None:
    assert isinstance(archive, Archive)
    assert len(archive) == 0 and archive.elites() == [] and archive.best() is None
    assert archive.coverage() == 0.0 and archive.qd_score() == 0.0
    assert archive.descriptors().shape == (0, 2)
    with pytest.raises(LookupError, match="empty"):
        archive.sample(np.random.default_rng(0))


def test_add_elites_best_coverage_qd(archive: ArchiveBase) -> None:
    progs = spread_programs(60)
    for p in progs:
        archive.add(p)
    elites = archive.elites()
    scores = [e.score for e in elites]
    assert scores == sorted(scores, reverse=True), "elites must be best first"
    best = max(progs, key=lambda p: p.score)
    assert archive.best() is best and elites[0] is best
    assert len(archive) == len(elites) >= 1
    assert 0.0 < archive.coverage() <= 1.0
    assert archive.coverage() == pytest.approx(len(archive) / archive.cells)
    low = min(p.score for p in progs)
    assert archive.qd_score() == pytest.approx(sum(e.score - low for e in elites))
    assert archive.qd_score(offset=0.0) == pytest.approx(sum(scores))
    assert archive.qd_score() >= 0.0
    assert archive.history_size == 60
    desc = archive.descriptors()
    assert desc.shape == (len(elites), 2)
    np.testing.assert_allclose(desc, [e.descriptor for e in elites])
    for e in elites:
        assert archive.cell_of(e.id) is not None
    assert archive.cell_of("not-an-id") is None


def test_add_returns_whether_elite(archive: ArchiveBase) -> None:
    assert archive.add(prog(1.0, (0.5, 0.5))) is True
    assert archive.add(prog(2.0, (0.5, 0.5))) is True  # better, same spot
    assert archive.add(prog(0.5, (0.5, 0.5))) is False  # worse, same spot


def test_equal_score_keeps_earlier(archive: ArchiveBase) -> None:
    first = prog(1.0, (0.5, 0.5))
    archive.add(first)
    assert archive.add(prog(1.0, (0.5, 0.5))) is False
    assert archive.best() is first and archive.elites() == [first]


def test_same_program_twice_is_one_program(archive: ArchiveBase) -> None:
    p = prog(1.0, code="x = 1\n")
    assert archive.add(p) is True
    assert archive.add(prog(5.0, code="x = 1\n")) is False
    assert archive.history_size == 1 and archive.best() is p


def test_failures_are_counted_and_never_sampled(archive: ArchiveBase) -> None:
    good = spread_programs(5)
    for p in good:
        archive.add(p)
    bad = [failed(s) for s in (Status.ERROR, Status.TIMEOUT, Status.MEMORY, Status.INVALID)]
    bad.append(failed(feats=None))  # features are not required of a failure
    bad.append(failed(feats=(1.0, 2.0, 3.0)))  # nor checked
    for b in bad:
        assert archive.add(b) is False
    assert archive.failures == len(bad)
    bad_ids = {b.id for b in bad}
    assert all(archive.cell_of(i) is None for i in bad_ids)
    rng = np.random.default_rng(1)
    for _ in range(200):
        parent, insp = archive.sample(rng, n_inspirations=3, explore=0.5)
        assert parent.ok and parent.id not in bad_ids
        assert all(p.ok and p.id not in bad_ids for p in insp)


def test_validation_messages(archive: ArchiveBase) -> None:
    with pytest.raises(ValueError, match=r"requires program\.descriptor.*2"):
        archive.add(prog(1.0, None))
    with pytest.raises(ValueError, match=r"length 2.*got shape \(3,\)"):
        archive.add(prog(1.0, (0.1, 0.2, 0.3)))
    with pytest.raises(ValueError, match="finite"):
        archive.add(prog(1.0, (0.1, math.nan)))
    with pytest.raises(ValueError, match="evaluated"):
        archive.add(Program(code="y = 2\n"))
    with pytest.raises(ValueError, match="finite score"):
        archive.add(Program(code="y = 3\n").evaluated(EvalResult(status=Status.OK), (0.1, 0.1)))
    assert len(archive) == 0 and archive.failures == 0


def test_sample_arguments(archive: ArchiveBase) -> None:
    archive.add(prog(1.0))
    rng = np.random.default_rng(0)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"explore.*\[0, 1\]"):
            archive.sample(rng, explore=bad)
    with pytest.raises(ValueError, match="n_inspirations"):
        archive.sample(rng, n_inspirations=-1)
    _, insp = archive.sample(rng, n_inspirations=3)
    assert insp == []  # no other program to inspire


def test_inspirations_distinct_and_not_parent(archive: ArchiveBase) -> None:
    for p in spread_programs(80):
        archive.add(p)
    rng = np.random.default_rng(3)
    for _ in range(100):
        parent, insp = archive.sample(rng, n_inspirations=3, explore=0.3)
        ids = [p.id for p in insp]
        assert parent.id not in ids and len(set(ids)) == len(ids)
        assert len(insp) == min(3, len(archive) - 1 if archive.name != "greedy" else 3)
        # The first inspiration is the best program other than the parent.
        pool = archive.elites() if archive.name != "greedy" else archive.top()
        assert insp[0] is next(p for p in pool if p.id != parent.id)


@pytest.mark.parametrize("kind", list(FACTORIES))
def test_sample_is_reproducible(kind: str) -> None:
    one, other = FACTORIES[kind](), FACTORIES[kind]()
    progs = spread_programs(120, seed=5)
    for a in (one, other):
        for p in progs:
            a.add(p)
    r1, r2 = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(50):
        p1, i1 = one.sample(r1, n_inspirations=2)
        p2, i2 = other.sample(r2, n_inspirations=2)
        assert p1.id == p2.id and [p.id for p in i1] == [p.id for p in i2]


# -- parent selection ------------------------------------------------------------------------


def test_explore_one_is_uniform_and_zero_favours_the_best() -> None:
    a = GridElites(dims=2, bins=10, bounds=[(0, 1), (0, 1)], tournament=4, selection="tournament")
    for i in range(10):  # ten cells, scores 0..9
        a.add(prog(float(i), (i / 10 + 0.05, 0.5)))
    rng = np.random.default_rng(0)
    uniform = [a.sample(rng, explore=1.0)[0].score for _ in range(4000)]
    counts = np.bincount(np.asarray(uniform, dtype=int), minlength=10)
    assert counts.min() > 300  # every elite ~400 times
    greedy = [a.sample(rng, explore=0.0)[0].score for _ in range(4000)]
    # Tournament of 4 out of 10: P(best) = 4/10, the worst can never win.
    assert np.mean(np.asarray(greedy) == 9.0) == pytest.approx(0.4, abs=0.04)
    assert 0.0 not in greedy and np.mean(greedy) > np.mean(uniform)


def test_greedy_parent_is_always_best() -> None:
    a = Greedy(dims=2, top_k=3)
    for p in spread_programs(30):
        a.add(p)
    assert a.cells == 1 and len(a) == 1 and a.coverage() == 1.0
    assert len(a.top()) == 3
    rng = np.random.default_rng(0)
    for _ in range(20):
        parent, insp = a.sample(rng, n_inspirations=5, explore=1.0)
        assert parent is a.best()
        assert len(insp) == 2 and {p.id for p in insp} == {p.id for p in a.top()[1:]}


def test_greedy_without_dims_accepts_programs_without_features() -> None:
    a = Greedy()
    assert a.add(prog(1.0, None)) is True
    assert a.best() is not None and a.descriptors().shape == (1, 0)


# -- Cluster-Elites ---------------------------------------------------------------------------


def skewed(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """90% of points in the 0.05 box at the origin corner of [0,1]^2, the rest an
    exponential tail (scale 0.15) from that corner; uniform random scores."""
    rng = np.random.default_rng(seed)
    corner = rng.random(n) < 0.9
    tail = np.minimum(rng.exponential(0.15, (n, 2)), 1.0)
    x = np.where(corner[:, None], rng.random((n, 2)) * 0.05, tail)
    return x, rng.random(n)


def _check_cluster_invariants(a: ClusterElites, added: list[Program]) -> None:
    """Every cell non-empty; each elite is the best (then earliest) of its cell's points."""
    labels = a.labels()
    assert len(labels) == len(added)
    scores = np.array([p.score for p in added])
    assert a.cells == len(a) and a.coverage() == 1.0
    assert np.array_equal(np.unique(labels), np.arange(a.cells)), "an empty cell"
    elite_of = {a.cell_of(e.id): e for e in a.elites()}
    assert sorted(elite_of) == list(range(a.cells))
    for c, elite in elite_of.items():
        members = np.flatnonzero(labels == c)
        best = members[scores[members] == scores[members].max()].min()
        assert elite is added[best]


def test_skewed_descriptors_cluster_fills_every_cell_grid_does_not(
    record_property: Callable[[str, object], None],
) -> None:
    x, s = skewed(2000, seed=0)
    progs = [prog(float(si), (float(a), float(b))) for si, (a, b) in zip(s, x, strict=True)]
    cluster = ClusterElites(dims=2, seed=0)
    grids = {
        "declared": GridElites(dims=2, bounds=[(0.0, 1.0), (0.0, 1.0)]),
        "learned": GridElites(dims=2),
    }
    running_best: Program | None = None
    reclusters = n_last = 0
    for n, p in enumerate(progs, start=1):
        cluster.add(p)
        for g in grids.values():
            g.add(p)
        if running_best is None or p.score > running_best.score:
            running_best = p
        # The global best survives every re-cluster (and every add in between).
        assert cluster.best() is running_best
        assert cluster.elites()[0] is running_best
        if cluster.reclusters != reclusters:
            reclusters, n_last = cluster.reclusters, n
            _check_cluster_invariants(cluster, progs[:n])
    _check_cluster_invariants(cluster, progs)
    assert cluster.cells == min(64, math.ceil(math.sqrt(2 * n_last)))
    assert cluster.coverage() == 1.0 and reclusters >= 20
    for kind, g in grids.items():
        empty = 1.0 - g.coverage()
        record_property(f"grid_{kind}_empty_fraction", round(empty, 3))
        print(f"grid ({kind} bounds) empty fraction: {empty:.2f} of {g.cells} bins")
        assert empty > 0.5
        assert g.best() is running_best


def test_cluster_k_schedule_and_distinct_cap() -> None:
    a = ClusterElites(dims=2, k_max=8, seed=1)
    for n, p in enumerate(spread_programs(400), start=1):
        before = a.reclusters
        a.add(p)
        if a.reclusters != before:
            assert a.cells == min(8, math.ceil(math.sqrt(2 * n)), n)  # n distinct points
    assert a.cells == 8 and a.reclusters <= math.ceil(math.log(400) / math.log(1.25)) + 1
    # Only three distinct descriptors: never more than three cells.
    b = ClusterElites(dims=2, seed=0)
    few = [prog(float(i % 7), (float(i % 3), 1.0)) for i in range(300)]
    for p in few:
        b.add(p)
    assert b.cells == 3 and b.coverage() == 1.0
    _check_cluster_invariants(b, few)


def test_cluster_centroids_in_original_units_and_zero_spread() -> None:
    a = ClusterElites(dims=2, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(300):  # second feature constant: std 0 must not divide by zero
        a.add(prog(float(rng.random()), (1000.0 + 50.0 * float(rng.random()), 7.0)))
        assert np.all(np.isfinite(a.centroids))
    c = a.centroids
    assert c.shape == (a.cells, 2)
    assert np.all((c[:, 0] >= 1000.0) & (c[:, 0] <= 1050.0))
    np.testing.assert_allclose(c[:, 1], 7.0)


def test_cluster_is_reproducible_with_a_seed() -> None:
    progs = spread_programs(500, seed=2)
    a, b = ClusterElites(dims=2, seed=4), ClusterElites(dims=2, seed=4)
    for p in progs:
        a.add(p)
        b.add(p)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.labels(), b.labels())
    assert [p.id for p in a.elites()] == [p.id for p in b.elites()]


def test_cluster_constructor_validation() -> None:
    with pytest.raises(ValueError, match="growth"):
        ClusterElites(dims=2, growth=1.0)
    with pytest.raises(ValueError, match="k_max"):
        ClusterElites(dims=2, k_max=0)
    with pytest.raises(ValueError, match="dims"):
        ClusterElites(dims=0)


# -- Grid-Elites -------------------------------------------------------------------------------


def test_grid_rebins_all_history_when_bounds_grow() -> None:
    g = GridElites(dims=2, bins=2, bounds=[(0.0, 1.0), (0.0, 1.0)], margin=0.0)
    a = prog(1.0, (0.1, 0.1))
    b = prog(2.0, (0.6, 0.1))
    c = prog(3.0, (0.1, 0.9))
    for p in (a, b, c):
        assert g.add(p) is True
    assert g.cell_of(a.id) != g.cell_of(b.id) and len(g) == 3
    far = prog(0.5, (9.0, 0.1))  # outside: x bounds grow to [0, 9]
    assert g.add(far) is True
    assert g.rebins == 1
    np.testing.assert_allclose(g.bounds, [[0.0, 9.0], [0.0, 1.0]])
    # a and b now share the low-x bin; the better one (b) is its elite, a is not lost
    # from history and sits in the bin its descriptor says.
    for p in (a, b, c, far):
        assert g.cell_of(p.id) == int(g.cell_index(p.descriptor)[0])
    assert g.cell_of(a.id) == g.cell_of(b.id)
    assert {p.id for p in g.elites()} == {b.id, c.id, far.id}
    # Old programs are still elites in the right bins: bin (x, y) per program.
    assert g.cell_of(b.id) == 0 * 2 + 0 and g.cell_of(c.id) == 0 * 2 + 1
    assert g.cell_of(far.id) == 1 * 2 + 0


def test_grid_widening_is_geometric() -> None:
    g = GridElites(dims=1, bins=10, bounds=[(0.0, 1.0)])
    for i in range(1, 200):
        g.add(prog(float(i), (1.0 + 0.05 * i,)))  # drifts steadily to the right
    assert g.rebins <= 30
    assert g.bounds[0, 1] >= 1.0 + 0.05 * 199


def test_grid_learns_bounds_and_samples_during_warmup() -> None:
    g = GridElites(dims=2, bins=5, warmup=4)
    assert g.bounds is None
    first = prog(1.0, (2.0, 3.0))
    g.add(first)
    assert g.sample(np.random.default_rng(0))[0] is first  # usable from the first program
    for xy in [(4.0, 3.0), (2.0, 5.0), (3.0, 4.0)]:
        g.add(prog(0.5, xy))
    lo, hi = g.bounds[:, 0], g.bounds[:, 1]
    np.testing.assert_allclose(lo, [2.0 - 0.2, 3.0 - 0.2])
    np.testing.assert_allclose(hi, [4.0 + 0.2, 5.0 + 0.2])
    g.add(prog(0.1, (3.0, 3.5)))  # inside: bounds frozen after the warm-up
    np.testing.assert_allclose(g.bounds[:, 0], lo)
    assert g.rebins == 0


def test_grid_constructor_validation() -> None:
    with pytest.raises(ValueError, match=r"expected shape \(2, 2\), got \(3, 2\)"):
        GridElites(dims=2, bounds=[(0, 1), (0, 1), (0, 1)])
    with pytest.raises(ValueError, match="low < high"):
        GridElites(dims=2, bounds=[(0, 1), (1, 1)])
    with pytest.raises(ValueError, match="bins"):
        GridElites(dims=2, bins=[3, 3, 3])
    with pytest.raises(ValueError, match="too many"):
        GridElites(dims=40, bins=10)
    assert GridElites(dims=3, bins=[2, 3, 4]).cells == 24


# -- make_archive ------------------------------------------------------------------------------


def test_make_archive() -> None:
    assert isinstance(make_archive("cluster", dims=2, seed=0, k_max=16), ClusterElites)
    grid = make_archive("grid", dims=2, seed=0, bounds=[(0, 1), (0, 1)], bins=3)
    assert isinstance(grid, GridElites) and grid.cells == 9
    assert isinstance(make_archive("greedy", dims=2, seed=0, bounds=[(0, 1), (0, 1)]), Greedy)
    with pytest.raises(ValueError, match="cluster, grid, greedy"):
        make_archive("tree", dims=2, seed=0)


# -- archives that describe programs themselves ------------------------------------------------

TUNED = "A = {a!r}\nB = {b!r}\n\n\ndef solve():\n    return A * B\n"


def tuned(a: float, b: float, score: float, parent: Program | None = None) -> Program:
    """An ok program that differs from the others only in its two constants."""
    p = Program(code=TUNED.format(a=a, b=b), parents=(parent.id,) if parent else ())
    return p.evaluated(EvalResult(status=Status.OK, score=score))


def constant_walk(n: int, seed: int = 0) -> list[Program]:
    rng = np.random.default_rng(seed)
    a, b = 1.0, 1.0
    out = []
    for _ in range(n):
        a, b = a * float(np.exp(0.5 * rng.normal())), b * float(np.exp(0.5 * rng.normal()))
        out.append(tuned(round(a, 6), round(b, 6), float(rng.random())))
    return out


@pytest.mark.parametrize("kind", ["cluster", "grid", "greedy"])
def test_embedding_archives_see_changed_constants(kind: str) -> None:
    a = make_archive(kind, dims=None, seed=0, descriptor="embedding")
    progs = constant_walk(120)
    for p in progs:
        a.add(p)
    assert a.dims == 16 and a.descriptor is not None and a.descriptor.kind == "embedding"
    programs, descs = a.history()
    assert [p.id for p in programs] == [p.id for p in progs] and descs.shape == (120, 16)
    assert np.ptp(descs[:, 0]) > 1.0  # the constants moved the descriptor
    if kind == "cluster":
        assert a.cells == a.target_k(120) == 16 and a.coverage() == 1.0
    if kind == "grid":
        # 2 bins per dimension, and only two components vary: four quadrants are filled
        assert a.cells == 2**16 and len(a) == 4


def test_code_size_descriptor_collapses_what_the_embedding_separates() -> None:
    code = make_archive("cluster", dims=None, seed=0, descriptor="code")
    emb = make_archive("cluster", dims=None, seed=0, descriptor="embedding")
    for p in constant_walk(60):
        code.add(p)
        emb.add(p)
    assert code.cells == 1  # every program has the same size and numeric share
    assert emb.cells == emb.target_k(60) > 1


def test_embedding_refit_reclusters_everything_and_replays_exactly() -> None:
    one = ClusterElites(dims=None, seed=3, descriptor=make_descriptor("embedding"))
    other = ClusterElites(dims=None, seed=3, descriptor=make_descriptor("embedding"))
    progs = constant_walk(200, seed=1)
    for p in progs:
        one.add(p)
        other.add(p)
    assert one.descriptor is not None and one.descriptor.fits > 10  # type: ignore[attr-defined]
    assert one.reclusters >= one.descriptor.fits  # type: ignore[attr-defined]
    assert (one.labels() == other.labels()).all()
    assert np.array_equal(one.centroids, other.centroids)
    assert [p.id for p in one.elites()] == [p.id for p in other.elites()]
    # every program sits in the cell of its nearest centroid, in the refit coordinates
    _, x = one.history()
    d = ((x[:, None, :] - one.centroids[None]) ** 2).sum(-1)
    assert (d[np.arange(len(x)), one.labels()] <= d.min(axis=1) + 1e-9).all()
    # the same programs added twice stay one program (the embedding gets no extra row)
    assert one.add(progs[5]) is False and one.history_size == len(one.descriptor) == 200  # type: ignore[arg-type]


def test_metrics_archive_learns_its_length_from_the_first_program() -> None:
    a = make_archive("cluster", dims=None, seed=0, descriptor="metrics")
    for i in range(10):
        m = {"x": float(i), "y": float(i % 3)}
        a.add(Program(code=f"x = {i}").evaluated(EvalResult(status=Status.OK, score=i, metrics=m)))
    assert a.dims == 2 and a.descriptors().shape == (len(a), 2) and a.cells > 1
    with pytest.raises(ValueError, match="reports metrics"):
        make_archive("grid", dims=None, seed=0, descriptor="metrics").add(prog(1.0))


def test_grid_bins_shrink_with_dimensions_and_too_many_cells_are_refused() -> None:
    from aster_nb.archive.grid import default_bins

    assert [default_bins(d) for d in (1, 2, 3, 4, 6, 7, 16)] == [100, 10, 5, 3, 2, 2, 2]
    assert GridElites(dims=2).cells == 100 and GridElites(dims=16).cells == 2**16
    with pytest.raises(ValueError, match=r"10 bins per dimension in 16 dimensions.*too many"):
        GridElites(dims=16, bins=10)
    with pytest.raises(ValueError, match="max_cells"):
        GridElites(dims=2, bins=20, max_cells=100)
    with pytest.raises(ValueError, match="learns its bounds"):
        GridElites(dims=None, bounds=[(0, 1)], descriptor=make_descriptor("embedding"))


# -- parent selection rules --------------------------------------------------------------------


def test_adaptive_breeds_from_the_best_until_it_stalls_then_from_distinct_elites() -> None:
    from aster_nb.archive.selection import STALL_MIN

    a = GridElites(dims=2, bins=10, bounds=[(0, 1), (0, 1)], selection="adaptive")
    for i in range(10):  # each add improves the best: the search is climbing
        a.add(prog(float(i), (i / 10 + 0.05, 0.5)))
    rng = np.random.default_rng(0)
    assert all(a.sample(rng, explore=1.0)[0] is a.best() for _ in range(50))
    _, insp = a.sample(rng, n_inspirations=3)  # greedy's inspirations: the next best
    assert insp[0].score == 8.0 and insp[1].score == 7.0 and insp[2].score <= 6.0
    best = a.best()
    for i in range(STALL_MIN):  # no improvement for a while: stalled
        a.add(prog(0.5, (0.95, 0.005 + i / 100)))
    assert a.best() is best
    parents = [a.sample(rng, explore=0.0)[0] for _ in range(400)]
    assert 0.05 < np.mean([p is best for p in parents]) < 0.95
    # a significant improvement ends the stall
    a.add(prog(100.0, (0.5, 0.95)))
    assert all(a.sample(rng)[0].score == 100.0 for _ in range(20))


def test_a_gap_long_against_recent_ones_but_short_against_the_run_is_not_a_stall() -> None:
    from aster_nb.archive.selection import STALL_FACTOR, Progress

    p = Progress()
    for i in range(90):  # an improvement at every add: the usual gap is 1
        p.update(float(i), None if i == 0 else float(i - 1), 0.0)
    for _ in range(40):  # far beyond STALL_FACTOR usual gaps, but short against the run
        p.update(0.0, 89.0, 0.0)
        assert not p.stalled(), p.since
    assert p.since == 40 > STALL_FACTOR
    while not p.stalled():
        p.update(0.0, 89.0, 0.0)
    assert p.since == 45 and p.adds == 135  # the best has not moved in the last third


def test_a_start_where_every_score_ties_is_not_a_stall_until_one_differs() -> None:
    from aster_nb.archive.selection import STALL_MIN

    a = GridElites(dims=2, bins=10, bounds=[(0, 1), (0, 1)], selection="adaptive")
    start = prog(0.0, (0.05, 0.05))
    a.add(start)
    for i in range(3 * STALL_MIN):  # a plateau: every child scores what the start does
        a.add(prog(0.0, (0.15 + (i % 8) / 10, 0.15 + (i // 8) / 20)))
    assert len(a) > 10
    rng = np.random.default_rng(0)
    # nothing to rank them by: the start stays the parent, as greedy's would
    assert all(a.sample(rng, explore=1.0)[0] is start for _ in range(50))
    a.add(prog(-1.0, (0.95, 0.95)))  # one scores differently: the plateau is a stall now
    parents = [a.sample(rng, explore=0.0)[0] for _ in range(400)]
    assert 0.05 < np.mean([p is start for p in parents]) < 0.95


def test_dns_prefers_the_elite_farthest_from_anything_better() -> None:
    from aster_nb.archive.selection import dominated_novelty

    x = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [0.2, 0.1]])
    scores = np.array([3.0, 2.0, 1.0, 0.5])
    dns = dominated_novelty(x, scores, scaled=True)
    assert dns[0] == np.inf  # nothing beats the best
    assert dns[2] > dns[1] and dns[2] > dns[3]  # the far, mediocre one is the most distinct
    a = GridElites(dims=2, bins=10, bounds=[(0, 10), (0, 10)], selection="dns", tournament=4)
    for (u, v), s in zip(x, scores, strict=True):
        a.add(prog(float(s), (float(u), float(v))))
    rng = np.random.default_rng(1)
    picks = [a.sample(rng, explore=0.0)[0].score for _ in range(2000)]
    # with all 4 in the tournament the best wins; DNS ranks the far one next
    assert picks.count(3.0) == 2000 or np.mean(np.asarray(picks) == 1.0) > np.mean(
        np.asarray(picks) == 2.0
    )


def test_curiosity_counts_children_that_became_elites_per_parent_cell() -> None:
    a = GridElites(dims=2, bins=2, bounds=[(0, 1), (0, 1)], selection="curiosity")
    root = prog(1.0, (0.25, 0.25))
    a.add(root)
    child = prog(2.0, (0.25, 0.25))
    child.parents = (root.id,)
    a.add(child)  # became the elite of its cell: +1 for the parent's cell
    loser = prog(0.0, (0.25, 0.25))
    loser.parents = (root.id,)
    a.add(loser)  # did not: -0.5
    cell = a.cell_of(root.id)
    assert a._curiosity == {cell: 0.5}
    with pytest.raises(ValueError, match="selection must be one of"):
        GridElites(dims=2, selection="roulette")
