"""Alias of `movierec.trainer.bulk_offline` (the name `movierec recommend --all` imports)."""

from __future__ import annotations

from movierec.trainer.bulk_offline import HEADER, write_all_recommendations

__all__ = ["HEADER", "write_all_recommendations"]
