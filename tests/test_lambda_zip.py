"""The transform's deployment zip: deterministic, and holding exactly what the Lambda needs."""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from s3tstream.provision import lambda_zip


def test_build_twice_gives_the_same_bytes_and_sha() -> None:
    a, b = lambda_zip.build(), lambda_zip.build()
    assert a.data == b.data
    assert a.sha256 == b.sha256 == base64.b64encode(hashlib.sha256(a.data).digest()).decode()
    assert lambda_zip.package().data == a.data


def test_contains_only_the_package_init_and_the_transform_modules() -> None:
    pkg = lambda_zip.build()
    transform = sorted(p.name for p in lambda_zip.transform_dir().glob("*.py"))
    want = sorted(["s3tstream/__init__.py"] + [f"s3tstream/transform/{n}" for n in transform])
    with zipfile.ZipFile(io.BytesIO(pkg.data)) as zf:
        names = zf.namelist()
        assert names == want  # sorted, nothing else (no __pycache__, no CLI modules)
        assert "s3tstream/transform/__init__.py" in names
        for info in zf.infolist():
            assert info.date_time == lambda_zip.FIXED_TIME
            assert info.external_attr >> 16 == 0o100644
            assert info.create_system == 3
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.extra == b""
        for n in transform:
            assert zf.read(f"s3tstream/transform/{n}") == (lambda_zip.transform_dir() / n).read_bytes()
        init = zf.read("s3tstream/__init__.py")
    assert init == lambda_zip.INIT_PY
    tree = ast.parse(init)
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_file_times_and_modes_do_not_change_the_bytes(tmp_path: Path) -> None:
    src = tmp_path / "transform"
    shutil.copytree(lambda_zip.transform_dir(), src, ignore=shutil.ignore_patterns("__pycache__"))
    for i, p in enumerate(sorted(src.glob("*.py"))):
        os.utime(p, (1_000_000 + i, 2_000_000_000 - i))
        p.chmod(0o600 if i % 2 else 0o755)
    (src / "notes.txt").write_text("not python: not shipped")
    assert lambda_zip.build(src).data == lambda_zip.build().data


def test_a_changed_module_changes_the_sha(tmp_path: Path) -> None:
    src = tmp_path / "transform"
    shutil.copytree(lambda_zip.transform_dir(), src, ignore=shutil.ignore_patterns("__pycache__"))
    with open(src / "records.py", "a", encoding="utf-8") as f:
        f.write("\n# changed\n")
    assert lambda_zip.build(src).sha256 != lambda_zip.build().sha256


def test_the_handler_imports_from_the_zip_with_the_standard_library_only(tmp_path: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(lambda_zip.build().data)) as zf:
        zf.extractall(tmp_path)
    # -I: isolated (no user site, no PYTHONPATH, cwd not on sys.path); -S: no site-packages.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import importlib; m = importlib.import_module('s3tstream.transform');"
        "assert callable(m.handler) and callable(m.encode_settings);"
        "assert m.__file__.startswith(sys.argv[1]);"
        "print(sorted(k for k in sys.modules if k.startswith('s3tstream')))"
    )
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "s3tstream.transform" in r.stdout
    # handler "s3tstream.transform.handler": module path + attribute Lambda resolves
    mod, _, attr = lambda_zip.HANDLER.rpartition(".")
    assert (mod, attr) == ("s3tstream.transform", "handler")
