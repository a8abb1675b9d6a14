"""
Check the built sdist and wheel carry what a user and a distributor need.

    python .ci/check_dist.py DIST_DIR

The wheel: the package with its py.typed marker, the license, and extras that are
for users only (tooling lives in dependency groups). The sdist: the license, the
changelog, the pins and everything the test suite needs to run from it (conftest
files, helpers, test folders, examples, docs). Prints one line per problem and exits 1
if there is any.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

USER_EXTRAS = {
    "aio",
    "all",
    "forward",
    "gateway",
    "otel",
    "otlp",
    "otlp-grpc",
    "redis",
    "structlog",
}
WHEEL_NEEDS = ("cse_bridge/__init__.py", "cse_bridge/py.typed", "licenses/LICENSE")
SDIST_NEEDS = (
    "LICENSE",
    "README.md",
    "CHANGELOG.md",
    "constraints.txt",
    "pyproject.toml",
    "tests/conftest.py",
    "tests/helpers.py",
    "tests/engine/conftest.py",
    "tests/gateway/redis_fixtures.py",
    "tests/typing/api.py",
    "examples/logging_handler.py",
    "docs/conf.py",
    "docs/protocol.md",
    "deploy/prometheus/cse-bridge-alerts.yml",
    "deploy/grafana/cse-bridge-dashboard.json",
)


def check_wheel(path: Path) -> list[str]:
    """Problems of the wheel at *path*."""
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(wheel.read(metadata_name).decode())
    problems = [
        f"wheel: no file ending in {need}"
        for need in WHEEL_NEEDS
        if not any(name.endswith(need) for name in names)
    ]
    extras = set(metadata.get_all("Provides-Extra") or [])
    if extras != USER_EXTRAS:
        problems.append(f"wheel: extras {sorted(extras)}, not {sorted(USER_EXTRAS)}")
    if metadata.get("License-Expression") != "MIT":
        problems.append("wheel: License-Expression is not MIT")
    if not metadata.get("Requires-Python"):
        problems.append("wheel: no Requires-Python")
    return problems


def check_sdist(path: Path) -> list[str]:
    """Problems of the sdist at *path*."""
    with tarfile.open(path) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    problems = [
        f"sdist: {need} is missing" for need in SDIST_NEEDS if need not in names
    ]
    problems += [
        f"sdist: {name} should not be shipped"
        for name in sorted(names)
        if "__pycache__" in name or name.startswith(("docs/_build/", ".venv/"))
    ]
    return problems


def main(argv: list[str]) -> int:
    """Check the one sdist and one wheel in the folder named by argv[1]."""
    dist = Path(argv[1])
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        print(f"check_dist: expected one wheel and one sdist in {dist}")
        return 1
    problems = check_wheel(wheels[0]) + check_sdist(sdists[0])
    for problem in problems:
        print(f"check_dist: {problem}")
    if not problems:
        print(f"check_dist: {wheels[0].name} and {sdists[0].name} are complete")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
