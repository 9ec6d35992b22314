"""Every installed package is pinned (constraints.txt), at the version installed: a fresh clone
gets the packages CI tested, their own dependencies too."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
#: What ``python -m venv`` itself installs: not the project's.
VENV_OWN = {"pip", "setuptools", "wheel"}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            [specifier] = requirement.specifier  # exactly one, and it is ==
            assert specifier.operator == "==", f"{path.name}: {line!r} is not pinned with =="
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def test_every_installed_package_is_pinned_at_its_installed_version():
    pins = _pins(ROOT / "constraints.txt")
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    unpinned = sorted(set(installed) - set(pins) - VENV_OWN)
    assert not unpinned, f"installed but not in constraints.txt: {unpinned}"
    other = {
        name: (installed[name], pins[name]) for name in installed.keys() & pins.keys() if installed[name] != pins[name]
    }
    assert not other, f"installed (left) other than pinned (right): {other}"


def test_the_requirements_pin_what_the_constraints_pin():
    constraints = _pins(ROOT / "constraints.txt")
    for name in ("requirements.txt", "requirements-dev.txt"):
        for package, version in _pins(ROOT / name).items():
            assert constraints.get(package) == version, (
                f"{name}: {package}=={version}, constraints.txt: {constraints.get(package)}"
            )
    assert "-c constraints.txt" in (ROOT / "requirements.txt").read_text().splitlines()
