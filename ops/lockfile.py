"""Is requirements/lock.txt still the lock of setup.cfg? (standard library only: runs before the venv).

`make lock` resolves setup.cfg's ranges (runtime and every extra) plus requirements/tools.in into exact,
hash-checked pins, then `stamp` writes a digest of those inputs into the lock's header. `make setup` and CI
run `check` first: when setup.cfg's requirements or the tools changed since the lock was made, the digest
differs and set-up stops with the command that mends it, instead of installing versions nobody chose.

    python3.11 ops/lockfile.py check|stamp|digest
"""

from __future__ import annotations

import configparser
import hashlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUP_CFG = ROOT / "setup.cfg"
TOOLS_IN = ROOT / "requirements" / "tools.in"
LOCK = ROOT / "requirements" / "lock.txt"
DIGEST_LINE = re.compile(r"^# inputs-sha256: ([0-9a-f]{64})$", re.MULTILINE)


def _lines(text: str) -> list[str]:
    """Requirement lines without blanks or comments, whitespace squeezed."""
    kept = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            kept.append(" ".join(line.split()))
    return kept


def lock_inputs(setup_cfg: Path = SETUP_CFG, tools_in: Path = TOOLS_IN) -> list[str]:
    """What the lock is resolved from, one normalised line each, in a stable order."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(setup_cfg, encoding="utf-8")
    inputs = [f"python_requires {config.get('options', 'python_requires', fallback='')}"]
    inputs += [f"install {req}" for req in sorted(_lines(config.get("options", "install_requires")))]
    if config.has_section("options.extras_require"):
        for extra, reqs in sorted(config.items("options.extras_require")):
            inputs += [f"extra {extra} {req}" for req in sorted(_lines(reqs))]
    inputs += [f"tool {req}" for req in sorted(_lines(tools_in.read_text(encoding="utf-8")))]
    return inputs


def inputs_digest(setup_cfg: Path = SETUP_CFG, tools_in: Path = TOOLS_IN) -> str:
    return hashlib.sha256("\n".join(lock_inputs(setup_cfg, tools_in)).encode()).hexdigest()


def recorded_digest(lock: Path = LOCK) -> str | None:
    match = DIGEST_LINE.search(lock.read_text(encoding="utf-8")) if lock.exists() else None
    return match.group(1) if match else None


def stamp(lock: Path = LOCK, setup_cfg: Path = SETUP_CFG, tools_in: Path = TOOLS_IN) -> None:
    """Write (or replace) the digest line at the end of the lock's generated header comment."""
    lines = [
        line
        for line in lock.read_text(encoding="utf-8").splitlines(keepends=True)
        if not DIGEST_LINE.match(line.rstrip("\n"))
    ]
    header_end = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    lines.insert(header_end, f"# inputs-sha256: {inputs_digest(setup_cfg, tools_in)}\n")
    lock.write_text("".join(lines), encoding="utf-8")


def check(lock: Path = LOCK, setup_cfg: Path = SETUP_CFG, tools_in: Path = TOOLS_IN) -> str | None:
    """None when the lock matches setup.cfg and tools.in, else why not."""
    if not lock.exists():
        return f"{lock.name} is missing"
    recorded = recorded_digest(lock)
    if recorded is None:
        return f"{lock.name} has no '# inputs-sha256:' line (made by hand?)"
    if recorded != inputs_digest(setup_cfg, tools_in):
        return f"{lock.name} is stale: setup.cfg's requirements or tools.in changed since it was made"
    return None


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "check"
    if command == "digest":
        print(inputs_digest())
        return 0
    if command == "stamp":
        stamp()
        return 0
    if command == "check":
        problem = check()
        if problem is None:
            return 0
        print(f"LOCK ERROR: requirements/{problem}.", file=sys.stderr)
        print("  Run `make lock` and commit requirements/lock.txt.", file=sys.stderr)
        return 1
    print("usage: lockfile.py check|stamp|digest", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
