"""Writing a matplotlib figure as a PNG: rendered in memory, closed, written atomically (Agg backend)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from boltzpath.io.atomic import atomic_write_bytes  # noqa: E402


def save_png(fig, path: Path, dpi: int = 100, tight: bool = False) -> Path:
    """Render ``fig`` to PNG in memory, close it, and write the bytes atomically."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
