"""The profiles of the book (``notebooks/profiles.yml``): how big each chapter's run is.

* ``smoke``   tiny settings for CI: the whole book in a few minutes on 2 cores;
* ``default`` the laptop book (the notebooks' own defaults should be this profile);
* ``full``    the paper's whole grid at laptop model sizes (hours);
* ``paper``   the paper's model sizes, for a GPU.

The file holds, per notebook and per profile, only the parameters that differ from the
notebook's own defaults (its cell tagged ``parameters``), and ``start_first``: the notebooks a
parallel build starts before the others (the longest, so that the rest fill the other kernels
meanwhile instead of leaving the longest to run alone at the end).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eraserbook.errors import RunnerError

PROFILES = ("smoke", "default", "full", "paper")
DEFAULT_PROFILE = "default"
PROFILES_FILE = Path("notebooks") / "profiles.yml"


def check_profile(profile: str) -> None:
    """Raises :class:`RunnerError` unless ``profile`` is one of :data:`PROFILES`."""
    if profile not in PROFILES:
        raise RunnerError(f"unknown profile '{profile}' (known: {', '.join(PROFILES)})")


@dataclass
class Profiles:
    """The profiles file: profile descriptions and per-notebook, per-profile parameter overrides.

    Attributes:
        descriptions: profile name -> one-line description.
        overrides: notebook name -> profile name -> {parameter: value}.
        start_first: notebook names a parallel build starts first, in this order (the rest
            follow in toc order).
    """

    descriptions: dict[str, str]
    overrides: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    start_first: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path) -> Profiles:
        """Reads and validates ``profiles.yml`` (its structure; parameter names are checked later).

        Args:
            path: the YAML file.

        Returns:
            The parsed profiles.

        Raises:
            RunnerError: when the file is missing or malformed, or names an unknown profile.
        """
        if not path.is_file():
            raise RunnerError(f"{path}: profiles file not found")
        data = yaml.safe_load(path.read_text()) or {}
        descriptions = data.get("profiles") or {}
        if set(descriptions) != set(PROFILES):
            raise RunnerError(
                f"{path}: 'profiles' must describe exactly {', '.join(PROFILES)}; "
                f"found {', '.join(descriptions) or 'none'}"
            )
        overrides = data.get("notebooks") or {}
        if not isinstance(overrides, dict):
            raise RunnerError(f"{path}: 'notebooks' must map notebook names to profiles")
        for notebook, per_profile in overrides.items():
            per_profile = per_profile or {}
            overrides[notebook] = per_profile
            for profile, params in per_profile.items():
                if profile not in PROFILES:
                    raise RunnerError(
                        f"{path}: notebook '{notebook}' names unknown profile '{profile}' "
                        f"(known: {', '.join(PROFILES)})"
                    )
                if params is not None and not isinstance(params, dict):
                    raise RunnerError(
                        f"{path}: notebooks.{notebook}.{profile} must map parameter names to values"
                    )
                per_profile[profile] = params or {}
        start_first = data.get("start_first") or []
        if not isinstance(start_first, list) or not all(isinstance(name, str) for name in start_first):
            raise RunnerError(f"{path}: 'start_first' must be a list of notebook names")
        return cls(descriptions=descriptions, overrides=overrides, start_first=tuple(start_first))

    def parameters_for(self, notebook: str, profile: str) -> dict[str, Any]:
        """The overrides of ``notebook`` under ``profile`` (empty: the notebook's own defaults)."""
        return dict(self.overrides.get(notebook, {}).get(profile, {}))


def parse_value(text: str) -> Any:
    """A command-line parameter value as YAML: ``0.05`` -> float, ``[1, 2]`` -> list, ``abc`` -> str."""
    value = yaml.safe_load(text)
    # PyYAML (YAML 1.1) reads 1e-3 as text; on a command line it is meant as a number.
    if isinstance(value, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value):
        return float(value)
    return value
