"""Names of the objects platforms create, within their platform's length limits."""

from __future__ import annotations

import hashlib


def bounded_name(name: str, limit: int) -> str:
    """``name`` if it fits in ``limit`` characters, else its head and a hash of the whole, so
    two long names stay apart."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"
