"""A run folder: results.csv, results.md, PNG figures and TensorBoard logs of one experiment run.

Every file is written atomically (``nsr.atomic.write_atomically``: a temporary file in the same
folder, then ``os.replace``), so a reader never sees half a table.
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
from pathlib import Path

from nsr.atomic import write_atomically


def default_folder(name: str, root: str | os.PathLike = "lightning_logs/experiments") -> Path:
    """``root/name/version_N`` with N one above the highest existing version (created here)."""
    base = Path(root) / name
    base.mkdir(parents=True, exist_ok=True)
    while True:
        versions = [int(m.group(1)) for p in base.iterdir() if (m := re.fullmatch(r"version_(\d+)", p.name))]
        folder = base / f"version_{max(versions, default=-1) + 1}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:  # another run took this version at the same moment
            continue


def format_value(v) -> str:
    """A CSV/markdown cell: floats to 6 significant digits, NaN as empty."""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.6g}"
    return "" if v is None else str(v)


def csv_text(rows: list[dict]) -> str:
    """CSV of ``rows`` with the union of their keys as columns, in first-seen order."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([format_value(r.get(c)) for c in columns])
    return buf.getvalue()


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A markdown table.

    >>> print(markdown_table(["noise", "time"], [["1e-1", 5.02]]))
    | noise | time |
    |---|---|
    | 1e-1 | 5.02 |
    """
    cells = [[format_value(c) if not isinstance(c, str) else c for c in r] for r in rows]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(out)


class RunFolder:
    """The folder of one experiment run, with a TensorBoard ``SummaryWriter`` in it."""

    def __init__(self, name: str, out: str | os.PathLike | None = None):
        self.name = name
        if out is None:
            self.path = default_folder(name)
        else:
            self.path = Path(out)
            self.path.mkdir(parents=True, exist_ok=True)
        self._writer = None

    @property
    def writer(self):
        """The run's TensorBoard SummaryWriter (event files in the run folder)."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.path))
        return self._writer

    def write_text(self, filename: str, text: str) -> Path:
        p = self.path / filename
        write_atomically(p, lambda f: f.write(text), "w", encoding="utf-8", newline="")
        return p

    def write_csv(self, rows: list[dict], filename: str = "results.csv") -> Path:
        return self.write_text(filename, csv_text(rows))

    def save_figure(self, stem: str, fig) -> Path:
        """``stem.png`` in the run folder, and the same image in TensorBoard under ``figures/stem``
        (rendered once)."""
        import matplotlib.pyplot as plt
        import numpy as np
        from PIL import Image

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        p = self.path / f"{stem}.png"
        write_atomically(p, lambda f: f.write(buf.getvalue()))
        buf.seek(0)
        rgb = np.asarray(Image.open(buf).convert("RGB"))  # [H, W, 3]
        self.writer.add_image(f"figures/{stem}", rgb, 0, dataformats="HWC")
        return p

    def log_scalars(self, prefix: str, row: dict, step: int = 0) -> None:
        """Every finite numeric value of ``row`` as TensorBoard scalar ``prefix/key`` at ``step``."""
        for k, v in row.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if math.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
