"""The Lambda zip holds s3tstream/__init__.py and s3tstream/transform/*.py: stdlib only."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import s3tstream
import s3tstream.transform

SCRIPT = r"""
import base64, json, os, sys
sys.path.insert(0, ".")
import s3tstream.transform as t
os.environ.update(t.encode_settings({"database": "db", "table": "t", "mode": "upsert",
    "keys": ["pk"], "columns": [{"name": "pk", "type": "string", "required": True}]}))
data = base64.b64encode(json.dumps({"eventName": "INSERT", "eventSource": "aws:dynamodb",
    "dynamodb": {"NewImage": {"pk": {"S": "x"}}}}).encode()).decode()
out = t.handler({"records": [{"recordId": "1", "data": data}]}, None)
assert out["records"][0]["result"] == "Ok", out
top = {m.split(".")[0] for m in sys.modules}
foreign = sorted(m for m in top
                 if m not in sys.stdlib_module_names and m not in ("s3tstream", "__main__"))
ours = sorted(m for m in sys.modules if m.startswith("s3tstream"))
print(json.dumps({"foreign": foreign, "ours": ours}))
"""


def test_transform_runs_from_the_zip_layout_with_only_the_standard_library(tmp_path):
    pkg = tmp_path / "s3tstream"
    (pkg / "transform").mkdir(parents=True)
    shutil.copy(Path(s3tstream.__file__), pkg / "__init__.py")
    for f in Path(s3tstream.transform.__file__).parent.glob("*.py"):
        shutil.copy(f, pkg / "transform" / f.name)
    # -I: isolated (no user site, no PYTHON* env); -S: no site-packages at all.
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", SCRIPT], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["foreign"] == []
    assert all(m == "s3tstream" or m.startswith("s3tstream.transform") for m in report["ours"])
