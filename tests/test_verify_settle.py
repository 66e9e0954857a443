"""`verify` knows what is in flight and what is deployed (sandbox, one stack):

- put-item, then verify at once: the item is still in Firehose's buffer (the sandbox runs the
  deployed 30 s buffer 15 times faster), verify compares again within its settle window
  (derived from the deployed buffer intervals) and exits 0;
- a key really lost from the lake is still reported (after --settle seconds);
- after a config change `up` has not deployed (the mode), verify maps items as the deployed
  transform does and says that the config differs.
"""

from __future__ import annotations

import json

import pytest

PIPELINE = ("[lakeformation]\nintegrate = true\nmake_caller_admin = true\n"
            "[firehose]\nbuffer_interval_seconds = 60\nprocessor_interval_seconds = 0\n")
COLUMNS = '{ name = "pk", type = "string", required = true }, { name = "qty", type = "long" }'


def lake_table(stack):
    from s3tstream.aws.client import Aws
    from s3tstream.config import model as config
    from s3tstream.lake.catalog import S3TablesCatalog
    from s3tstream.lake.query import bucket_arn

    cfg = config.load(stack.config_path)
    aws = Aws(cfg)
    return S3TablesCatalog.for_stack(aws, bucket_arn(cfg, aws)).load_table((cfg.names.namespace, cfg.names.table))


@pytest.mark.sandbox
def test_put_item_then_verify_at_once_is_clean_and_a_lost_key_is_still_reported(stack, monkeypatch):
    from pyiceberg.expressions import EqualTo

    monkeypatch.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "1/15")  # the 60 s buffer flushes after 4 s
    stack.write(extra=PIPELINE, columns=COLUMNS)
    stack.cli("up")
    assert stack.state_path.exists()
    rec = next(r for r in stack.state()["resources"] if r["kind"] == "lambda-function")
    assert rec["outputs"]["settings"]["mode"] == "upsert"  # create-firehose recorded what it deployed

    stack.cli("put-item", "--item", '{"pk": "a", "qty": 1}', "--item", '{"pk": "b", "qty": 2}')
    r = stack.cli("verify", "--output", "json")  # at once: both items are still buffered
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["counts"]["matching"] == 2, doc
    s = doc["settle"]
    assert s["rounds"] >= 1 and s["converged"] == 2  # they differed at first, then arrived
    assert s["window_seconds"] == 90 and "60s destination buffer interval (Firehose stream" in s["derived_from"]

    lake_table(stack).delete(EqualTo("pk", "a"))  # lost for real
    r = stack.cli("verify", "--settle", "1", "--output", "json", ok=False)
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["counts"]["missing"] == 1 and doc["examples"]["missing"] == [{"pk": "a"}]
    assert doc["settle"]["window_seconds"] == 1 and doc["settle"]["derived_from"] == "--settle"
    assert "may still be in flight" in r.stderr  # progress while it waits

    # a mode change `up` has not made: the deployed (upsert) transform wrote the lake
    cfg_text = stack.config_path.read_text().replace("[table]\n", '[table]\nmode = "changelog"\n')
    stack.config_path.write_text(cfg_text)
    doc = json.loads(stack.cli("verify", "--settle", "0", "--output", "json", ok=False).stdout)
    assert "counts" in doc, doc
    assert doc["counts"]["missing"] == 1 and doc["counts"]["matching"] == 1  # compared as upsert, no _op column
    assert any("changes the transform's mode" in n for n in doc["notes"]), doc["notes"]
