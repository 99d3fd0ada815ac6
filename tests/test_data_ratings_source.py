"""Data sources of issue #10: ratings files, synthetic ratings and Gaussian blobs, as workers get them.

A source travels as JSON to a worker that rebuilds its blocks from it alone; the blocks must be
what the pure modules give (``ratings_blocks``, ``SyntheticRatings.block``), and a file that
changed since it was planned must be refused, not read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from faasopt.data import (
    Blobs,
    Block,
    Ratings,
    RatingsFile,
    SyntheticRatings,
    block_bounds,
    holdout_ratings,
    load_blocks,
    ratings_blocks,
    ratings_shape,
    read_ratings,
    read_ratings_file,
    scan_ratings,
    source_kind,
    source_shape,
)
from faasopt.errors import DataError

TEXT = (
    "# user item rating timestamp\n0 0 4.0 1\n1 2 3.5 2\n\n2 1 5 3\n0 3 1.0 4\n3 3 2.5 5\n4 0 3 6\n"
)
"""Six ratings of users 0..4 and items 0..3."""
SR = {"users": 30, "items": 20, "rank": 3, "ratings": 301, "noise": 0.1, "seed": 7, "holdout": 50}


def _wire(source: dict) -> dict:
    """As a worker receives it: through JSON."""
    return json.loads(json.dumps(source))


def _same(a: Ratings, b: Ratings) -> None:
    assert (a.index, a.n_users, a.n_items) == (b.index, b.n_users, b.n_items)
    np.testing.assert_array_equal(a.users, b.users)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.values, b.values)


@pytest.fixture
def ratings_file(tmp_path: Path) -> Path:
    path = tmp_path / "ratings.txt"
    path.write_text(TEXT)
    return path


# ---- a ratings file ----


def test_scan_reads_counts_size_and_checksum(ratings_file: Path):
    digest = hashlib.sha256(TEXT.encode()).hexdigest()
    info = scan_ratings(ratings_file, sha256=digest.upper(), shuffle_seed=3)
    assert info == RatingsFile(
        uri=str(ratings_file),
        ratings=6,
        users=5,
        items=4,
        size=len(TEXT.encode()),
        sha256=digest,
        shuffle_seed=3,
    )
    assert scan_ratings(f"file://{ratings_file}").uri == str(ratings_file)
    assert RatingsFile.from_wire(_wire(info.to_wire())) == info


@pytest.mark.parametrize("seed", [None, 0, 5])
def test_file_blocks_are_ratings_blocks_of_the_whole_file(ratings_file: Path, seed):
    source = _wire({"ratings": scan_ratings(ratings_file, shuffle_seed=seed).to_wire()})
    expected = ratings_blocks(read_ratings(ratings_file), 3, seed)
    loaded = load_blocks(source, [2, 0], 3)
    assert [b.index for b in loaded] == [2, 0]
    _same(loaded[0], expected[2])
    _same(loaded[1], expected[0])
    assert source_kind(source) == "ratings"
    assert source_shape(source) == (6, 0)
    assert ratings_shape(source) == (6, 5, 4)
    assert holdout_ratings(source) is None


def test_the_shuffle_mixes_users_across_blocks(ratings_file: Path):
    plain = load_blocks({"ratings": scan_ratings(ratings_file).to_wire()}, [0, 1, 2], 3)
    shuffled = load_blocks(
        {"ratings": scan_ratings(ratings_file, shuffle_seed=1).to_wire()}, [0, 1, 2], 3
    )
    assert [b.users.tolist() for b in plain] == [[0, 1], [2, 0], [3, 4]]
    assert sorted(u for b in shuffled for u in b.users.tolist()) == [0, 0, 1, 2, 3, 4]
    assert [b.users.tolist() for b in shuffled] != [b.users.tolist() for b in plain]


def test_a_file_changed_since_it_was_planned_is_refused(ratings_file: Path):
    info = scan_ratings(ratings_file)
    ratings_file.write_text(TEXT.replace("4.0", "4.5"))  # same size, another checksum
    digest = hashlib.sha256(ratings_file.read_bytes()).hexdigest()
    with pytest.raises(DataError) as err:
        load_blocks({"ratings": info.to_wire()}, [0], 2)
    assert str(err.value) == (
        f"{ratings_file}: the file changed since the job was planned: expected SHA-256 "
        f"{info.sha256}, got {digest}"
    )
    ratings_file.write_text(TEXT + "5 5 1\n")
    with pytest.raises(DataError) as err:
        read_ratings_file(info)
    assert str(err.value) == (
        f"{ratings_file}: the file changed since the job was planned: expected {info.size} "
        f"bytes, got {info.size + 6}"
    )


def test_scan_refuses_what_a_worker_could_not_read(tmp_path: Path, ratings_file: Path):
    with pytest.raises(DataError) as err:
        scan_ratings(ratings_file, sha256="0" * 64)
    digest = hashlib.sha256(TEXT.encode()).hexdigest()
    assert str(err.value) == f"{ratings_file}: expected SHA-256 {'0' * 64}, the file has {digest}"
    with pytest.raises(DataError) as err:
        scan_ratings(tmp_path / "missing.txt")
    assert str(err.value) == f"{tmp_path / 'missing.txt'}: file not found"
    with pytest.raises(DataError) as err:
        scan_ratings("s3://bucket/ratings.txt")
    assert str(err.value) == (
        "s3://bucket/ratings.txt: expected a local ratings file: s3:// and http(s):// ratings "
        "are not supported yet"
    )
    bad = tmp_path / "bad.txt"
    bad.write_text("0 0 4\n1 x 3\n")
    with pytest.raises(DataError) as err:
        scan_ratings(bad)
    assert str(err.value) == f"{bad}:2: expected integer ids and a numeric rating, got '1 x 3'"
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"0 0 4 # caf\xe9\n")
    with pytest.raises(DataError, match="expected UTF-8 text, got a bad byte at offset 11"):
        scan_ratings(latin)


def test_more_blocks_than_ratings_or_a_bad_block_id_is_refused(ratings_file: Path):
    source = {"ratings": scan_ratings(ratings_file).to_wire()}
    with pytest.raises(DataError, match=r"expected at most 6 blocks \(one row each\), got 7"):
        load_blocks(source, [0], 7)
    with pytest.raises(DataError, match=r"expected a block index in \[0, 3\), got 3"):
        load_blocks(source, [1, 3], 3)


# ---- synthetic ratings ----


def test_synthetic_ratings_blocks_are_the_generators(tmp_path: Path):
    source = _wire({"syntheticRatings": SR})
    generator = SyntheticRatings(**{k: v for k, v in SR.items() if k != "holdout"})
    loaded = load_blocks(source, [3, 1], 4)
    _same(loaded[0], generator.block(3, 4))
    _same(loaded[1], generator.block(1, 4))
    assert [b.size for b in load_blocks(source, range(4), 4)] == [76, 75, 75, 75]
    assert source_kind(source) == "syntheticRatings"
    assert source_shape(source) == (301, 0)
    assert ratings_shape(source) == (301, 30, 20)
    holdout = holdout_ratings(source)
    assert holdout is not None and holdout.size == 50 and holdout.index == -1
    _same(holdout, generator.holdout(50))
    assert holdout_ratings({"syntheticRatings": {**SR, "holdout": 0}}) is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({**SR, "holdout": -1}, "expected an integer holdout >= 0, got -1"),
        ({**SR, "holdout": 1.5}, "expected an integer holdout >= 0, got 1.5"),
        ({**SR, "users": 0}, "expected at least 1 users, got 0"),
        ({**SR, "noise": -1.0}, "expected a finite noise >= 0, got -1.0"),
        ({k: v for k, v in SR.items() if k != "holdout"}, "expected syntheticRatings fields"),
    ],
)
def test_bad_synthetic_ratings_are_data_errors(params, message):
    with pytest.raises(DataError, match=message):
        load_blocks({"syntheticRatings": params}, [0], 2)


# ---- blobs ----

BLOBS = {"samples": 103, "features": 4, "centers": 3, "spread": 0.5, "seed": 11}


def test_blobs_are_generated_per_block_from_seed_and_block():
    source = _wire({"blobs": BLOBS})
    alone = load_blocks(source, [2], 4)[0]
    together = load_blocks(source, [3, 2, 0], 4)[1]
    assert isinstance(alone, Block) and alone.index == 2
    np.testing.assert_array_equal(alone.A.toarray(), together.A.toarray())
    np.testing.assert_array_equal(alone.y, together.y)
    sizes = np.diff(block_bounds(103, 4)).tolist()
    assert [b.A.shape for b in load_blocks(source, range(4), 4)] == [(n, 4) for n in sizes]
    other = load_blocks({"blobs": {**BLOBS, "seed": 12}}, [2], 4)[0]
    assert not np.array_equal(other.A.toarray(), alone.A.toarray())
    assert source_kind(source) == "blobs" and source_shape(source) == (103, 4)


def test_blobs_lie_around_centers_every_block_shares():
    blobs = Blobs(**BLOBS)
    centers = blobs.center_points()
    assert centers.shape == (3, 4) and np.all(np.abs(centers) <= 10)
    every = blobs.blocks(range(4), 4)
    rows = np.vstack([b.A.toarray() for b in every])
    labels = np.concatenate([b.y for b in every])
    assert set(labels.tolist()) == {0.0, 1.0, 2.0}
    offsets = rows - centers[labels.astype(int)]
    assert abs(offsets.std() - 0.5) < 0.05 and abs(offsets.mean()) < 0.05
    np.testing.assert_array_equal(Blobs(**{**BLOBS, "samples": 7}).center_points(), centers)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({**BLOBS, "spread": 0.0}, "expected a finite spread > 0, got 0.0"),
        ({**BLOBS, "centers": 0}, "expected at least 1 centers, got 0"),
        ({**BLOBS, "seed": -1}, "expected a non-negative seed, got -1"),
        ({**BLOBS, "samples": 2.5}, "expected an integer samples, got 2.5"),
        ({**BLOBS, "labels": True}, "expected blobs fields"),
    ],
)
def test_bad_blobs_are_data_errors(params, message):
    with pytest.raises(DataError, match=message):
        load_blocks({"blobs": params}, [0], 1)


# ---- one vocabulary for every kind ----


def test_ratings_questions_about_other_kinds_are_data_errors():
    for source in ({"blobs": BLOBS}, {"synthetic": {"samples": 9, "features": 3, "density": 1.0, "seed": 0}}):  # fmt: skip
        kind = next(iter(source))
        message = f"expected a ratings source (ratings or syntheticRatings), got '{kind}'"
        with pytest.raises(DataError) as err:
            ratings_shape(source)
        assert str(err.value) == message
        with pytest.raises(DataError) as err:
            holdout_ratings(source)
        assert str(err.value) == message


def test_an_unknown_kind_names_every_known_one():
    with pytest.raises(DataError) as err:
        source_kind({"csv": {}})
    assert str(err.value) == (
        "expected a data source kind in ['blobs', 'libsvm', 'ratings', 'synthetic', "
        "'syntheticRatings'], got 'csv'"
    )
