"""What a user who installs quickadapt as a package gets: the sdist and the wheel built from it
as `pip install`/`uv build` build them (setuptools' PEP 517 backend, in a copy of the repository,
so nothing is written into the checkout), with their licences, their metadata and nothing of the
repository's tests or bench data."""
import email.parser
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import quickadapt

ROOT = Path(__file__).resolve().parent.parent
# what a checkout may hold besides its files: the venv, build outputs, caches
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "work")


def build(backend_call: str, source: Path, out: Path) -> tuple[str, str]:
    """Run one setuptools.build_meta hook in `source`, in a process of its own as a build
    frontend does; returns the built file's name and everything the build printed."""
    out.mkdir(exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", f"import setuptools.build_meta as b, sys; print(b.{backend_call}(sys.argv[1]))", str(out)],
        cwd=source, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1], done.stdout + done.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The sdist of a copy of the repository, and the wheel built from that sdist unpacked (as
    `pip install quickadapt-*.tar.gz` and `uv build` do)."""
    pytest.importorskip("setuptools", minversion="77", reason="building needs setuptools>=77 (pyproject's build-system), not installed")
    tmp = tmp_path_factory.mktemp("packaging")
    tree = tmp / "checkout"
    shutil.copytree(ROOT, tree, ignore=NOT_SOURCE)
    sdist_name, sdist_log = build("build_sdist", tree, tmp / "dist")
    sdist = tmp / "dist" / sdist_name
    with tarfile.open(sdist) as tar:
        # the safe filter where this Python has it (3.11.4+); the archive is the one just built
        tar.extractall(tmp / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (unpacked,) = (tmp / "unpacked").iterdir()
    wheel_name, wheel_log = build("build_wheel", unpacked, tmp / "dist")
    return sdist, tmp / "dist" / wheel_name, sdist_log + wheel_log


def metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(z.read(name).decode())


def test_build_has_no_deprecation_warning(built):
    """setuptools announced that a `license = { text = ... }` table stops building after
    2027-02-18: the SPDX string form keeps `pip install` of the sdist working after that."""
    assert "DeprecationWarning" not in built[2], built[2][-3000:]


def test_wheel_holds_the_package_and_licences_not_tests_or_bench_data(built):
    _, wheel, _ = built
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        licence = z.read(next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))).decode()
    assert {n.split("/")[0] for n in names} == {"quickadapt", f"quickadapt-{quickadapt.__version__}.dist-info"}
    # Office-Caltech (.mat, no clear licence) stays in the repository's bench data
    assert not [n for n in names if n.endswith(".mat") or ("office" in n.lower() and not n.endswith(".py"))]
    assert "Apache License" in licence and "Version 2.0" in licence
    data_folders = {n.split("/")[2] for n in names if n.startswith("quickadapt/datasets_data/") and n.count("/") > 2}
    assert data_folders == {"clinc150", "omniglot"}
    for folder in data_folders:  # each shipped data set with its licence, in the package and in dist-info
        assert f"quickadapt/datasets_data/{folder}/LICENSE" in names
        assert any(n.endswith(f"licenses/src/quickadapt/datasets_data/{folder}/LICENSE") for n in names)


def test_wheel_metadata(built):
    meta = metadata(built[1])
    assert meta["Version"] == quickadapt.__version__  # the one manifests record, not a second copy
    expression = meta["License-Expression"]
    assert set(re.split(r"\s+AND\s+", expression)) == {"Apache-2.0", "CC-BY-3.0", "MIT"}
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().startswith("# quickadapt")
    # the torch a plain `pip install` of the wheel resolves is the one constraints.txt (and so
    # setup.sh and CI) pins: another version would be another, multi-GB build
    pin = re.search(r"^torch==(\S+)", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    assert f"torch=={pin}" in meta.get_all("Requires-Dist")
    # 3.11 is the oldest Python the code runs on (hashlib.file_digest): a 3.10 resolver must refuse it
    assert meta["Requires-Python"] == ">=3.11"


def test_sdist_holds_what_builds_the_package_not_tests_or_bench_data(built):
    sdist, _, _ = built
    with tarfile.open(sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    assert {"LICENSE", "README.md", "pyproject.toml", "src/quickadapt/__init__.py",
            "src/quickadapt/datasets_data/clinc150/LICENSE", "src/quickadapt/datasets_data/omniglot/LICENSE"} <= set(names)
    # tests/ would be half a suite (its helpers and the bench data it reads are not shipped)
    assert not [n for n in names if n.split("/")[0] in ("tests", "bench")]
