"""Small numeric helpers shared by the evaluation scripts (eval_voice.py, reply_fit.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile(values: Sequence[float], q: float, *, empty: float = float("nan")) -> float:
    """The linear-interpolated ``q``-th percentile of ``values``; ``empty`` when there are none."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else empty
