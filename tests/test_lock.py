"""The dependency lock (README, Locked dependencies): requirements.lock covers requirements.txt, agrees with its
pins, carries hashes for every package, and is what `make setup` installs, with --require-hashes."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> list[Requirement]:
    lines = (PROJECT_ROOT / "requirements.txt").read_text().splitlines()
    return [Requirement(line.split("#")[0].strip()) for line in lines if line.split("#")[0].strip()]


def _locked() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) from requirements.lock."""
    text = (PROJECT_ROOT / "requirements.lock").read_text()
    blocks = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", text, re.MULTILINE)
    return {canonicalize_name(name): (version, hashes.count("--hash=")) for name, version, hashes in blocks}


def test_every_requirement_is_locked_at_a_version_it_allows():
    locked = _locked()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is in requirements.txt but not in requirements.lock: run `make lock`"
        assert req.specifier.contains(locked[name][0], prereleases=True), (req, locked[name][0])


def test_the_exact_pins_stay_exact():
    pins = {canonicalize_name(r.name): str(r.specifier) for r in _requirements()}
    assert pins["torch"] == "==2.14.1" and pins["torchvision"] == "==0.29.1"
    assert _locked()["torch"][0] == "2.14.1" and _locked()["torchvision"][0] == "0.29.1"


def test_every_locked_package_has_a_hash_and_nothing_is_unpinned():
    text = (PROJECT_ROOT / "requirements.lock").read_text()
    locked = _locked()
    assert len(locked) > 50 and all(count >= 1 for _, count in locked.values()), locked
    starts = [line for line in text.splitlines() if line and not line[0].isspace() and not line.startswith("#")]
    assert len(starts) == len(locked), "a line of requirements.lock is not `name==version` with hashes"


def test_make_setup_installs_the_lock_with_hashes_required():
    makefile = (PROJECT_ROOT / "Makefile").read_text().replace("$(LOCK)", "requirements.lock")
    assert re.search(r"^\$\(VENV\)/\.installed: requirements\.lock$", makefile, re.MULTILINE)  # rebuilt on change
    recipe = makefile.split("$(VENV)/.installed:", 1)[1].split("\n\n", 1)[0]
    installs = [line for line in recipe.splitlines() if "pip install" in line]
    assert installs == ["\t$(PY) -m pip install --quiet --require-hashes -r requirements.lock"]
