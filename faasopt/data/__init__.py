"""Problem data: the paper's synthetic generator, the LIBSVM reader (local, ``s3://`` and
``http(s)://`` files, read by byte range), ratings for matrix factorization (files and a seeded
low-rank generator), Gaussian blobs for k-means, and the blocks they yield."""

from faasopt.data.blobs import Blobs
from faasopt.data.blocks import Block, block_bounds
from faasopt.data.libsvm import LibsvmIndex, LibsvmInfo, read_libsvm_block, scan_libsvm
from faasopt.data.ratings import (
    Ratings,
    RatingsFile,
    SyntheticRatings,
    ratings_blocks,
    read_ratings,
    read_ratings_file,
    scan_ratings,
)
from faasopt.data.source import (
    RATINGS_KINDS,
    holdout_ratings,
    load_blocks,
    ratings_shape,
    source_kind,
    source_shape,
)
from faasopt.data.synthetic import synthetic_block, synthetic_blocks

__all__ = [
    "RATINGS_KINDS",
    "Blobs",
    "Block",
    "LibsvmIndex",
    "LibsvmInfo",
    "Ratings",
    "RatingsFile",
    "SyntheticRatings",
    "block_bounds",
    "holdout_ratings",
    "load_blocks",
    "ratings_blocks",
    "ratings_shape",
    "read_libsvm_block",
    "read_ratings",
    "read_ratings_file",
    "scan_libsvm",
    "scan_ratings",
    "source_kind",
    "source_shape",
    "synthetic_block",
    "synthetic_blocks",
]
