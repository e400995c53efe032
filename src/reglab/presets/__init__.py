"""Ready-made studies shipped as TOML files in this package (``reglab compare <name>``)."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from reglab.config import ConfigError


def preset_names() -> list[str]:
    """Names of the shipped presets, sorted."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml"))


def preset_text(name: str) -> str:
    """The TOML text of a preset."""
    if name not in preset_names():
        raise ConfigError(f"unknown preset {name!r} (presets: {', '.join(preset_names())})")
    return resources.files(__name__).joinpath(f"{name}.toml").read_text()


def read_preset(name: str) -> dict[str, Any]:
    """A preset parsed into a plain dict (validate it with `reglab.study.StudySpec.from_dict`)."""
    return tomllib.loads(preset_text(name))
