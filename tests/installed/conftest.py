"""The package as a user gets it: the wheel built from an sdist, installed without extras and
not editable into a fresh virtual environment, and run from outside the checkout.

``make test`` runs these tests in a pytest run of their own (``pytest -p no:xdist
tests/installed``); the rest of the suite imports the checkout through an editable install
that has every test tool, so it cannot see a dependency a user's ``pip install`` lacks, a
module left out of the wheel, or an entry point that does not start.

The session builds the wheel once (``python -m build``: an sdist, then the wheel from the
unpacked sdist, so nothing but what the sdist holds reaches it, and no stale ``build/`` folder
of the checkout either), creates the venv (without pip: the test environment's pip installs
into it with ``--python``, through pip's cache) and installs the wheel with ``-c
constraints.txt``. Every command then runs with the working directory in a temporary folder,
so the checkout's ``archiver/`` and ``replayer/`` cannot shadow the installed ones; the fixture
checks that they are imported from the venv's site-packages and that no test-only package is
there. moto's server stays in the test process (the root conftest's session fixture); the
venv's commands reach it through the environment the autouse fixture sets.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.distributions import index_reachable, index_url

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Installed:
    """A venv holding the installed wheel, and a folder outside the checkout to run in."""

    venv: Path
    outside: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def site_packages(self) -> Path:
        purelib = self.run_python("import sysconfig; print(sysconfig.get_paths()['purelib'])")
        return Path(purelib.stdout.strip())

    def env(self) -> dict[str, str]:
        """This process's environment (the AWS settings point at moto), nothing Python-specific
        that could add the checkout to the path, and the venv first on PATH."""
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("PYTHON") and name != "VIRTUAL_ENV"
        }
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, tool: str, *argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """A console script of the venv (``ddb-archiver``, ``ddb-replayer``), as a user runs it."""
        return subprocess.run(
            [str(self.venv / "bin" / tool), *argv],
            capture_output=True,
            text=True,
            cwd=self.outside,
            env=self.env(),
            timeout=timeout,
        )

    def run_python(self, code: str, *argv: str) -> subprocess.CompletedProcess[str]:
        """``code`` run by the venv's Python (outside the checkout); it must exit 0."""
        return subprocess.run(
            [str(self.python), "-c", code, *argv],
            capture_output=True,
            text=True,
            cwd=self.outside,
            env=self.env(),
            timeout=120,
            check=True,
        )


def _pip_failed(what: str, done: subprocess.CompletedProcess[str]) -> None:
    if not index_reachable(index_url()):
        pytest.skip(f"no package index reachable at {index_url()}: cannot {what}")
    pytest.fail(f"{what} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``python -m build`` makes of the checkout (via its sdist)."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        _pip_failed("build the wheel", done)
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The wheel, without extras, in a fresh venv; commands run outside the checkout."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--clear", "--without-pip", str(venv)], check=True
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--quiet", "--no-compile", "-c", str(ROOT / "constraints.txt"), str(wheel)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if done.returncode != 0:
        _pip_failed("install the wheel's dependencies", done)
    installed = Installed(venv=venv, outside=tmp_path_factory.mktemp("outside"))
    site = installed.site_packages()
    where = installed.run_python(
        "import importlib.util, archiver, replayer\n"
        "print(archiver.__file__); print(replayer.__file__)\n"
        "for name in ('moto', 'pytest', 'hypothesis', 'build', 'mypy'):\n"
        "    print(name, importlib.util.find_spec(name) is not None)\n"
    ).stdout.splitlines()
    assert Path(where[0]).is_relative_to(site), where[0]
    assert Path(where[1]).is_relative_to(site), where[1]
    assert not Path(where[0]).is_relative_to(ROOT)
    # Without extras: nothing of the test toolchain (its presence could hide a missing import).
    assert where[2:] == [
        f"{name} False" for name in ("moto", "pytest", "hypothesis", "build", "mypy")
    ]
    yield installed
