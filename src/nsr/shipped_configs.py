"""The configs shipped with nsr, found by name: ``nsr fit --config weightwise``.

The repository's ``configs/`` folder is their one source; building the package copies it into
the package as ``nsr/configs/`` (``setup.py``), so an installed nsr (a wheel, ``pip install .``)
carries them. A source checkout (an editable install) reads ``configs/`` at the repository root.
No torch here: ``nsr configs`` answers at once.
"""
from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def config_folders() -> list[Path]:
    """Where shipped configs are looked for, first match wins: the installed package's
    ``nsr/configs/``, then the repository's ``configs/`` (a source checkout)."""
    return [p for p in (_PACKAGE / "configs", _PACKAGE.parents[1] / "configs") if p.is_dir()]


def shipped_configs() -> dict[str, Path]:
    """``{name: path}`` of every shipped config (``weightwise`` -> ``.../weightwise.yaml``), sorted by name."""
    found: dict[str, Path] = {}
    for folder in config_folders():
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def describe(path: Path, limit: int = 110) -> str:
    """The first sentence of a config's opening comment: what the run is."""
    words = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#") or line.lstrip("#").strip().startswith("nsr "):
                break
            words += line.lstrip("#").split()
    text = " ".join(words)
    end = text.find(". ")
    text = text if end < 0 else text[: end + 1]
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def resolve(name: str) -> str:
    """The config file ``name`` stands for: ``name`` itself if it is a file (or a path that is
    not a bare name), else the shipped config of that name (``weightwise`` or ``weightwise.yaml``).
    ``ValueError`` naming it for a bare name that is neither."""
    if os.path.exists(name) or os.sep in name or (os.altsep and os.altsep in name):
        return name  # a path: jsonargparse reports it if it is missing
    stem = name[:-5] if name.endswith(".yaml") else name[:-4] if name.endswith(".yml") else name
    configs = shipped_configs()
    if stem in configs:
        return str(configs[stem])
    raise ValueError(f"config: no file {name!r} and no shipped config of that name; the shipped configs are "
                     f"{', '.join(configs) or '(none found)'}")
