"""The data source a worker's payload carries: a plain, JSON-able dict naming one kind of data.

A worker rebuilds its blocks from the source alone, so any worker can take any block:

- ``{"synthetic": {"samples": N, "features": d, "density": p, "seed": s}}``: the paper's
  generator (seed 001, Section III), per block;
- ``{"libsvm": {"uri": ..., "rows": N, "features": d, "size": ..., "etag": ..., "sha256": ...,
  "offsets": [...], "lines": [...]}}``: a `LibsvmIndex`, the planner's `scan_libsvm` of the file
  for B blocks; a worker reads only its blocks' byte ranges;
- ``{"ratings": {"uri": path, "ratings": n, "users": U, "items": I, "size": ..., "sha256": ...,
  "shuffle_seed": s or None}}``: a `RatingsFile`, the planner's `scan_ratings` of a local
  ``user item rating`` file; a worker re-reads the whole file (checked against size and SHA-256)
  and cuts it with `ratings_blocks` (the shuffle needs every rating). Local paths only: a worker
  on another machine needs the file at the same path (s3:// and http(s):// are not supported yet);
- ``{"syntheticRatings": {"users", "items", "rank", "ratings", "noise", "seed", "holdout"}}``: a
  `SyntheticRatings`, per block, and ``holdout`` test ratings drawn apart (`holdout_ratings`);
- ``{"blobs": {"samples", "features", "centers", "spread", "seed"}}``: seeded Gaussian clusters
  (`faasopt.data.blobs.Blobs`), per block.

The field names are the spec's (``spec.problem.data``) in snake_case, so for the generated kinds
the spec object's ``model_dump()`` is the wire form.

`load_blocks` returns `Block` for synthetic, libsvm and blobs, and `Ratings` for the two ratings
kinds (``RATINGS_KINDS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from faasopt.data.blobs import Blobs
from faasopt.data.blocks import Block, _count
from faasopt.data.libsvm import LibsvmIndex, read_libsvm_block
from faasopt.data.ratings import (
    Ratings,
    RatingsFile,
    SyntheticRatings,
    ratings_blocks,
    read_ratings_file,
)
from faasopt.data.synthetic import synthetic_blocks
from faasopt.errors import DataError

__all__ = [
    "RATINGS_KINDS",
    "holdout_ratings",
    "load_blocks",
    "ratings_shape",
    "source_kind",
    "source_shape",
]

_FIELDS: dict[str, tuple[str, ...]] = {
    "synthetic": ("samples", "features", "density", "seed"),
    "libsvm": tuple(f.name for f in fields(LibsvmIndex)),
    "ratings": tuple(f.name for f in fields(RatingsFile)),
    "syntheticRatings": (*(f.name for f in fields(SyntheticRatings)), "holdout"),
    "blobs": tuple(f.name for f in fields(Blobs)),
}
RATINGS_KINDS = ("ratings", "syntheticRatings")
"""The kinds whose blocks are `Ratings` (for matrix factorization), not `Block`."""


def _unpack(source: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The source's kind and its parameters, checked for the kind's exact field names."""
    if not isinstance(source, Mapping) or len(source) != 1:
        raise DataError(
            f"expected a data source with exactly one of {sorted(_FIELDS)}, got {source!r}"
        )
    ((kind, params),) = source.items()
    if kind not in _FIELDS:
        raise DataError(f"expected a data source kind in {sorted(_FIELDS)}, got {kind!r}")
    if not isinstance(params, Mapping) or set(params) != set(_FIELDS[kind]):
        got = sorted(params) if isinstance(params, Mapping) else repr(params)
        raise DataError(f"expected {kind} fields {sorted(_FIELDS[kind])}, got {got}")
    return kind, dict(params)


def source_kind(source: Mapping[str, Any]) -> str:
    """The kind of a source: synthetic, libsvm, ratings, syntheticRatings or blobs."""
    return _unpack(source)[0]


def _synthetic_ratings(params: dict[str, Any]) -> tuple[SyntheticRatings, int]:
    holdout = params.pop("holdout")
    if isinstance(holdout, bool) or not isinstance(holdout, int) or holdout < 0:
        raise DataError(f"expected an integer holdout >= 0, got {holdout!r}")
    return SyntheticRatings(**params), holdout


def source_shape(source: Mapping[str, Any]) -> tuple[int, int]:
    """``(rows, features)`` of the whole data set the source describes, without loading it.

    For the ratings kinds, rows are the (training) ratings and features 0: ratings have no
    feature columns; their matrix's shape is `ratings_shape`.
    """
    kind, params = _unpack(source)
    if kind in RATINGS_KINDS:
        return ratings_shape(source)[0], 0
    rows = params["rows"] if kind == "libsvm" else params["samples"]
    return int(rows), int(params["features"])


def ratings_shape(source: Mapping[str, Any]) -> tuple[int, int, int]:
    """``(ratings, users, items)`` of a ratings source: training ratings and the matrix's shape.

    Raises
    ------
    DataError
        For a source of another kind, or bad fields.
    """
    kind, params = _unpack(source)
    if kind == "ratings":
        file = RatingsFile.from_wire(params)
        return file.ratings, file.users, file.items
    if kind == "syntheticRatings":
        synthetic, _ = _synthetic_ratings(params)
        return synthetic.ratings, synthetic.users, synthetic.items
    raise DataError(f"expected a ratings source ({' or '.join(RATINGS_KINDS)}), got {kind!r}")


def holdout_ratings(source: Mapping[str, Any]) -> Ratings | None:
    """The test ratings of a ratings source, drawn apart from every block; None when it has none.

    ``syntheticRatings`` with ``holdout`` > 0 gives that many (`SyntheticRatings.holdout`, block
    index -1); ``holdout`` 0 and a ``ratings`` file give None (a file's test set would be a file
    of its own).

    Raises
    ------
    DataError
        For a source of another kind, or bad fields.
    """
    kind, params = _unpack(source)
    if kind == "syntheticRatings":
        synthetic, holdout = _synthetic_ratings(params)
        return synthetic.holdout(holdout) if holdout else None
    if kind == "ratings":
        RatingsFile.from_wire(params)
        return None
    raise DataError(f"expected a ratings source ({' or '.join(RATINGS_KINDS)}), got {kind!r}")


def load_blocks(
    source: Mapping[str, Any], block_ids: Sequence[int], blocks: int
) -> list[Block] | list[Ratings]:
    """Load (generate or read) the blocks ``block_ids`` of ``blocks``, in that order.

    `Block` for synthetic, libsvm and blobs; `Ratings` for ``ratings`` and ``syntheticRatings``.

    Raises
    ------
    DataError
        For an unknown source kind, missing or extra fields, or data that cannot be loaded.
    """
    kind, params = _unpack(source)
    if kind == "synthetic":
        return synthetic_blocks(
            params["samples"],
            params["features"],
            params["density"],
            params["seed"],
            block_ids,
            blocks,
        )
    if kind == "blobs":
        return Blobs(**params).blocks(block_ids, blocks)
    if kind == "syntheticRatings":
        synthetic, _ = _synthetic_ratings(params)
        return [synthetic.block(b, blocks) for b in block_ids]
    if kind == "ratings":
        file = RatingsFile.from_wire(params)
        every = ratings_blocks(read_ratings_file(file), blocks, file.shuffle_seed)
        ids = [_count(b, "block index") for b in block_ids]
        if bad := [b for b in ids if not 0 <= b < blocks]:
            raise DataError(f"expected a block index in [0, {blocks}), got {bad[0]}")
        return [every[b] for b in ids]
    index = LibsvmIndex.from_wire(params)
    if index.blocks != blocks:
        raise DataError(f"the data source is indexed for {index.blocks} blocks, not {blocks}")
    return [read_libsvm_block(index, b) for b in block_ids]
