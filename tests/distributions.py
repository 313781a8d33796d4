"""The installed distributions' view of each other, and whether a package index answers.

Shared by the tests of what a user's ``pip install`` provides (``tests/test_runtime_imports.py``,
``tests/installed/``) and of what the Lambda image installs (``tests/test_deploy.py``). Reads
the metadata of the test environment, which holds every runtime dependency (and more).
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import urllib.request
from collections.abc import Iterable

from packaging.requirements import Requirement


def normalise(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(requirements: Iterable[str]) -> set[str]:
    """The (normalised) distributions ``requirements`` name and, recursively, everything they
    require: markers evaluated for this Python, a distribution's extras only where a
    requirement asks for them (``moto[server]``). A distribution not installed here adds itself
    but none of its requirements."""
    seen: set[tuple[str, str]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = normalise(requirement.name)
        for extra in ("", *sorted(requirement.extras)):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            try:
                lines = md.requires(name) or []
            except md.PackageNotFoundError:
                continue
            for line in lines:
                needed = Requirement(line)
                if needed.marker is None or needed.marker.evaluate({"extra": extra}):
                    todo.append(needed)
    return {name for name, _ in seen}


def index_url() -> str:
    return os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/") + "/"


def index_reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "pip/", timeout=5) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False
