"""Curation: label issues, duplicates and uniqueness as columns of one version (``service.curate``)."""

from app.services.curate.service import (
    MAX_K,
    NEAR_FRACTION,
    NEAR_THRESHOLDS,
    RESULT_COLUMNS,
    CurateSpec,
    InvalidCurate,
    curate,
    label_candidates,
)

__all__ = ["MAX_K", "NEAR_FRACTION", "NEAR_THRESHOLDS", "RESULT_COLUMNS", "CurateSpec", "InvalidCurate", "curate",
           "label_candidates"]
