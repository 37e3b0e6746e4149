"""requirements.txt, pyproject.toml and environment.yml describe one environment, and it is this one.

pip users install requirements.txt (``make``); conda users environment.yml, whose pip section
installs that same file; pyproject.toml declares the package's dependencies (core plus the
``book`` and ``test`` extras). Every pin must appear in both pin lists with the same version.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def normalise(name: str) -> str:
    """PEP 503 name normalisation: ``Foo_Bar`` and ``foo-bar`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(lines: list[str], where: str) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"{where}: '{line}' is not an exact pin (name==version)"
        pins[normalise(match.group(1))] = match.group(2)
    return pins


def requirements_pins() -> dict[str, str]:
    return parse_pins((REPO / "requirements.txt").read_text().splitlines(), "requirements.txt")


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pyproject_pins() -> dict[str, str]:
    project = pyproject()["project"]
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines.extend(extra)
    pins = parse_pins(lines, "pyproject.toml")
    assert len(pins) == len(lines), "pyproject.toml lists a package twice"
    return pins


def test_requirements_and_pyproject_pin_the_same_versions():
    required, declared = requirements_pins(), pyproject_pins()
    assert sorted(set(required) - set(declared)) == [], "in requirements.txt only"
    assert sorted(set(declared) - set(required)) == [], "in pyproject.toml only"
    differing = {name: (required[name], declared[name]) for name in required if required[name] != declared[name]}
    assert differing == {}, "requirements.txt vs pyproject.toml"


def test_environment_yml_installs_requirements_and_the_package():
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    dependencies = environment["dependencies"]
    pip_sections = [d["pip"] for d in dependencies if isinstance(d, dict) and "pip" in d]
    assert pip_sections == [["-r requirements.txt", "-e ."]]
    assert "pip" in dependencies
    # conda-only packages would be a second source of truth; only python and pip come from conda.
    conda_packages = [d for d in dependencies if isinstance(d, str)]
    assert sorted(re.split(r"[=<>]", d)[0] for d in conda_packages) == ["pip", "python"]
    python = next(d for d in conda_packages if d.startswith("python"))
    minimum = re.search(r">=\s*(\d+)\.(\d+)", pyproject()["project"]["requires-python"])
    conda_version = re.search(r"(\d+)\.(\d+)", python)
    assert minimum and conda_version, python
    assert tuple(map(int, conda_version.groups())) >= tuple(map(int, minimum.groups()))


@pytest.mark.parametrize("name", sorted(requirements_pins()))
def test_installed_version_matches_the_pin(name):
    version = requirements_pins()[name]
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{name} is pinned but not installed: run `make test` (it installs requirements.txt)")
    assert installed.split("+", 1)[0] == version, f"{name}: installed {installed}, pinned {version}"
