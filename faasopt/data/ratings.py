"""Ratings for matrix factorization: a `user item rating` text file or a seeded low-rank generator.

A rating is a triple (user, item, value) with 0-based integer ids: user u is row u of the user
factors and item i row i of the item factors, so ``n_users`` is the largest user id plus one (ids
from 1, as in MovieLens, leave row 0 unused, which costs r parameters and changes nothing else).
The ratings are cut into B blocks of consecutive ratings with :func:`faasopt.data.block_bounds`,
as the rows of a LIBSVM file are.

The text file has one rating a line: ``user item rating``, the fields separated by blanks, tabs,
commas or ``::`` (MovieLens's formats), optionally followed by a fourth field (MovieLens's
timestamp), which is ignored. Blank lines and lines starting with ``#`` are skipped. Any other
line is a `DataError` located at ``path:line``.

The synthetic generator draws true factors ``U*`` (users x r) and ``V*`` (items x r) with entries
from N(0, r^-1/2), so an entry of ``U* V*^T`` has unit variance, and each rating at a uniform
(user, item) pair as ``<U*_u, V*_i> + N(0, noise^2)``. Block b of B is drawn from
``(seed, RATINGS_STREAM, b)`` alone (the factors from ``(seed, FACTORS_STREAM)``, shared by every
block), so which worker generates which block changes nothing. ``holdout`` draws a test set from
its own stream.

A ratings file as a data source (`faasopt.data.source`): the planner reads it once with
:func:`scan_ratings` (validated, counted, hashed) into a :class:`RatingsFile`, the wire form; each
worker re-reads the whole file with :func:`read_ratings_file`, which refuses a file that changed
since (size, SHA-256, counts), and cuts it with :func:`ratings_blocks`. Local paths only: s3:// and
http(s):// are not supported yet, and a worker on another machine needs the file at the same path.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from faasopt.data.blocks import _count, block_bounds, block_range
from faasopt.errors import DataError

__all__ = [
    "Ratings",
    "RatingsFile",
    "SyntheticRatings",
    "ratings_blocks",
    "read_ratings",
    "read_ratings_file",
    "scan_ratings",
]

FACTORS_STREAM = 0x5246_0001
"""Tags in the generators' seeds: keep the factors, blocks and hold-out streams apart, and apart
from the other generators seeded with (seed, block). numpy's SeedSequence ignores trailing zeros
((seed, tag) and (seed, tag, 0) give one stream), so each use has a tag of its own."""
RATINGS_STREAM = 0x5246_0002
HOLDOUT_STREAM = 0x5246_0003
SHUFFLE_STREAM = 0x5246_0004

_SEPARATORS = re.compile(r"::|[\s,]+")


@dataclass(frozen=True, eq=False)
class Ratings:
    """Ratings ``values`` of ``users`` for ``items`` (int64 ids, shape (n,)), of one block."""

    index: int
    users: np.ndarray
    items: np.ndarray
    values: np.ndarray
    n_users: int
    n_items: int

    def __post_init__(self) -> None:
        n = self.values.shape
        if self.values.ndim != 1 or self.users.shape != n or self.items.shape != n:
            raise DataError(
                f"expected users, items and values of one 1-d shape in block {self.index}, got "
                f"{self.users.shape}, {self.items.shape} and {self.values.shape}"
            )
        for ids, count, name in (
            (self.users, self.n_users, "user"),
            (self.items, self.n_items, "item"),
        ):
            if ids.size and not (ids.min() >= 0 and ids.max() < count):
                raise DataError(f"expected {name} ids in [0, {count}) in block {self.index}")

    @property
    def size(self) -> int:
        return int(self.values.size)

    def take(self, index: int, rows: np.ndarray) -> Ratings:
        """The ratings at positions ``rows``, as block ``index``."""
        return Ratings(
            index, self.users[rows], self.items[rows], self.values[rows], self.n_users, self.n_items
        )


def _parse_line(text: str, path: str, line: int) -> tuple[int, int, float]:
    fields = _SEPARATORS.split(text.strip())
    if len(fields) not in (3, 4):
        raise DataError(f"expected 'user item rating', got {len(fields)} fields", path, line)
    try:
        user, item, value = int(fields[0]), int(fields[1]), float(fields[2])
    except ValueError:
        raise DataError(
            f"expected integer ids and a numeric rating, got {text.strip()!r}", path, line
        ) from None
    if user < 0 or item < 0:
        raise DataError(f"expected non-negative ids, got user {user} item {item}", path, line)
    if not math.isfinite(value):
        raise DataError(f"expected a finite rating, got {fields[2]!r}", path, line)
    return user, item, value


def _parse_ratings(lines: Iterable[str], where: str) -> Ratings:
    """All ratings of the lines of a text file named ``where``, as block 0."""
    triples = []
    for line, text in enumerate(lines, start=1):
        if text.strip() and not text.lstrip().startswith("#"):
            triples.append(_parse_line(text, where, line))
    if not triples:
        raise DataError("expected at least one rating, got none", where)
    users, items, values = (np.array(column) for column in zip(*triples, strict=True))
    return Ratings(
        0,
        users.astype(np.int64),
        items.astype(np.int64),
        values.astype(np.float64),
        int(users.max()) + 1,
        int(items.max()) + 1,
    )


def read_ratings(path: str | Path) -> Ratings:
    """All ratings of a text file, as block 0 (cut them with :func:`ratings_blocks`).

    Raises
    ------
    DataError
        At ``path:line`` for the first bad line; for a file without ratings.
    """
    with open(path, encoding="utf-8") as f:
        return _parse_ratings(f, str(path))


def _read_bytes(path: str) -> bytes:
    """The bytes of a local ratings file; a DataError for a remote, missing or unreadable one."""
    if "://" in path:
        raise DataError(
            "expected a local ratings file: s3:// and http(s):// ratings are not supported yet",
            path,
        )
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", path) from None


def _parse_bytes(data: bytes, where: str) -> Ratings:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"expected UTF-8 text, got a bad byte at offset {exc.start}", where
        ) from None
    return _parse_ratings(text.splitlines(), where)


@dataclass(frozen=True)
class RatingsFile:
    """A ratings file as the planner scanned it: the wire form of a ``ratings`` data source.

    Plain ints and strings (JSON-able). A worker re-reads the whole file (:func:`read_ratings_file`)
    and checks it is still the file scanned: same size, SHA-256 and counts.
    """

    uri: str
    """The file's local path (absolute once planned)."""
    ratings: int
    """Ratings in the file (lines with data)."""
    users: int
    """The largest user id plus one (ids are 0-based rows of U)."""
    items: int
    """The largest item id plus one."""
    size: int
    """Bytes of the file when it was scanned."""
    sha256: str
    """Of the whole file, as scanned (hex, lower case)."""
    shuffle_seed: int | None = None
    """Seed of the shuffle before cutting blocks (:func:`ratings_blocks`); None keeps file order."""

    def __post_init__(self) -> None:
        for name in ("ratings", "users", "items", "size"):
            if _count(getattr(self, name), name) < 1:
                raise DataError(f"expected {name} >= 1, got {getattr(self, name)}", self.uri)
        if self.shuffle_seed is not None and _count(self.shuffle_seed, "shuffle seed") < 0:
            raise DataError(f"expected a non-negative shuffle seed, got {self.shuffle_seed}")
        if not (isinstance(self.sha256, str) and re.fullmatch(r"[0-9a-f]{64}", self.sha256)):
            raise DataError(f"expected a lower-case hex SHA-256, got {self.sha256!r}", self.uri)

    def to_wire(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_wire(cls, params: Mapping[str, Any]) -> RatingsFile:
        return cls(**params)


def scan_ratings(
    path: str | os.PathLike[str], sha256: str | None = None, shuffle_seed: int | None = None
) -> RatingsFile:
    """Read and validate a local ratings file once, for the planner: counts, size and SHA-256.

    Parameters
    ----------
    path
        A local path (``file://`` accepted); s3:// and http(s):// are refused (not supported yet).
    sha256
        The file's expected SHA-256 (hex, either case), or None not to check it.
    shuffle_seed
        Carried into the wire form: see :func:`ratings_blocks`.

    Raises
    ------
    DataError
        At ``path:line`` for the first bad line; without a line for a missing or unreadable
        file, a remote URI, a checksum mismatch or a file without ratings.
    """
    name = os.fspath(path).removeprefix("file://")
    data = _read_bytes(name)
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256.lower():
        raise DataError(f"expected SHA-256 {sha256.lower()}, the file has {digest}", name)
    ratings = _parse_bytes(data, name)
    return RatingsFile(
        uri=name,
        ratings=ratings.size,
        users=ratings.n_users,
        items=ratings.n_items,
        size=len(data),
        sha256=digest,
        shuffle_seed=shuffle_seed,
    )


def read_ratings_file(file: RatingsFile) -> Ratings:
    """All ratings of a scanned file, re-read and checked to be the file the planner scanned.

    Raises
    ------
    DataError
        When the file is gone, unreadable, or changed since it was scanned (size, SHA-256).
    """
    data = _read_bytes(file.uri)
    if len(data) != file.size:
        raise DataError(
            f"the file changed since the job was planned: expected {file.size} bytes, got "
            f"{len(data)}",
            file.uri,
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != file.sha256:
        raise DataError(
            f"the file changed since the job was planned: expected SHA-256 {file.sha256}, got "
            f"{digest}",
            file.uri,
        )
    ratings = _parse_bytes(data, file.uri)
    if (ratings.size, ratings.n_users, ratings.n_items) != (file.ratings, file.users, file.items):
        raise DataError(
            f"expected {file.ratings} ratings of {file.users} users and {file.items} items, got "
            f"{ratings.size}, {ratings.n_users} and {ratings.n_items}",
            file.uri,
        )
    return ratings


def ratings_blocks(ratings: Ratings, n_blocks: int, seed: int | None = None) -> list[Ratings]:
    """Cut ``ratings`` into ``n_blocks`` blocks of consecutive ratings (sizes differ by <= 1).

    With a ``seed``, the ratings are first put in a seeded random order: a file sorted by user
    (MovieLens 1M is) would otherwise give each block its own users, which model averaging
    dislikes.
    """
    bounds = block_bounds(ratings.size, n_blocks)
    order = (
        np.arange(ratings.size)
        if seed is None
        else np.random.default_rng([_count(seed, "seed"), SHUFFLE_STREAM]).permutation(ratings.size)
    )
    return [ratings.take(b, order[bounds[b] : bounds[b + 1]]) for b in range(n_blocks)]


@dataclass(frozen=True)
class SyntheticRatings:
    """A seeded low-rank ratings matrix observed at random pairs, with Gaussian noise."""

    users: int
    items: int
    rank: int
    ratings: int
    """Ratings in all training blocks together."""
    noise: float
    """Standard deviation of the noise: the test RMSE a perfect fit reaches."""
    seed: int

    def __post_init__(self) -> None:
        for name in ("users", "items", "rank", "ratings"):
            if _count(getattr(self, name), name) < 1:
                raise DataError(f"expected at least 1 {name}, got {getattr(self, name)}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise DataError(f"expected a finite noise >= 0, got {self.noise}")
        if _count(self.seed, "seed") < 0:
            raise DataError(f"expected a non-negative seed, got {self.seed}")

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """The true factors ``U*`` (users, rank) and ``V*`` (items, rank)."""
        rng = np.random.default_rng([self.seed, FACTORS_STREAM])
        scale = self.rank**-0.25
        return (
            rng.normal(0.0, scale, (self.users, self.rank)),
            rng.normal(0.0, scale, (self.items, self.rank)),
        )

    def _draw(self, rng: np.random.Generator, n: int, index: int) -> Ratings:
        U, V = self.factors()
        users = rng.integers(0, self.users, n)
        items = rng.integers(0, self.items, n)
        values = np.einsum("nk,nk->n", U[users], V[items]) + rng.normal(0.0, self.noise, n)
        return Ratings(index, users, items, values, self.users, self.items)

    def block(self, block: int, blocks: int) -> Ratings:
        """Block ``block`` of ``blocks``: its share of ``ratings`` (see block_bounds)."""
        start, stop = block_range(self.ratings, blocks, block)
        rng = np.random.default_rng([self.seed, RATINGS_STREAM, block])
        return self._draw(rng, stop - start, block)

    def holdout(self, n: int) -> Ratings:
        """``n`` test ratings from the same matrix and noise, drawn apart from every block."""
        return self._draw(np.random.default_rng([self.seed, HOLDOUT_STREAM]), _count(n, "n"), -1)
