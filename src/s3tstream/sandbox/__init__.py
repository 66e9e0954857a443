"""Local AWS endpoint for the demo and the tests: moto plus what moto lacks.

The product never imports this package: it points boto3 at ``endpoint_url``. Everything below
runs behind ONE endpoint URL (moto picks the service from the SigV4 credential scope).

Using it
--------
- In-process (tests): ``with SandboxServer(port=0, latency="instant") as sb: sb.endpoint_url``
  (``s3tstream.sandbox.server``). ``sb.reset()`` clears every moto backend, the extensions'
  state and the server's faults. moto's state is process-wide: servers in one process share it.
- Background process (CLI): ``s3tstream.sandbox.control.start(home, port, latency)`` /
  ``stop(home)`` / ``status(home)``; the process is ``python -m s3tstream.sandbox serve``.
  ``control.running()`` / ``find(port)`` / ``stop_found(port)``: this user's sandboxes from any
  folder, through the registry of ``instances.py``.
- Access: loopback only; requests a web page could send (``Origin``, cross-site
  ``Sec-Fetch-Site``, a non-loopback ``Host``) get 403; control routes (all but ``GET
  /_sandbox/health``) and ``/moto-api/...`` need the token of ``instances.token_path(port)``
  (a 0600 file in this user's cache folder, written when the server starts listening) in the
  ``X-S3tstream-Sandbox-Token`` header.
- Control routes (``s3tstream.sandbox.client`` wraps them and sends the token; stdlib only):
  ``GET /_sandbox/health``, ``POST /_sandbox/reset``, ``GET|POST|DELETE /_sandbox/faults``
  (``inject_fault(url, service, operation, code, message, status=400, count=1)``: the next
  ``count`` calls fail with that AWS error in the protocol's own error format),
  ``POST /_sandbox/workers/run`` (run every data-plane worker once now),
  ``POST /_sandbox/dynamodb/ttl-delete`` (``ttl_delete(url, table, key)``).
- Latency: ``instant`` completes an asynchronous transition at the next describe (pollers run,
  never wait); ``realistic`` takes the delays in ``latency.py`` (the one place to tune them),
  multiplied by ``SandboxServer(latency_scale=...)`` or ``$S3TSTREAM_SANDBOX_LATENCY_SCALE``
  (tests and benchmarks/up_critical_path.py run it at a fraction of its speed);
  ``ext/readiness.py`` says which resources wait and what AWS refuses meanwhile.

Extending it (``s3tstream/sandbox/ext/<service>.py``; every module there is imported when a
server starts)
-------------------------------------------------------------------------------------------
::

    from s3tstream.sandbox.registry import AwsError, Reply, handles, worker, on_reset, control_route

    @handles("glue", "GetCatalog")          # botocore service + operation names
    def get_catalog(req):                  # req: registry.SandboxRequest
        # req.params = parsed input (json: the body; rest-json: body + path + query params)
        # req.account_id, req.region, req.latency, req.server, req.headers, req.body ...
        if missing:
            raise AwsError("EntityNotFoundException", "Catalog not found")  # status=400
        return {"Catalog": {...}}          # JSON 200, or Reply(body, status, headers)

    @worker("firehose-delivery", interval=0.5)
    def deliver(server): ...               # runs in a thread of each server; keep it short

    @on_reset
    def _clear(): ...                      # clear the module's own state on reset

    @control_route("POST", "firehose/flush")   # -> POST /_sandbox/firehose/flush
    def flush(server, body): return {...}

The middleware, per request: refuse browser requests; ``/_sandbox`` routes (with the token);
else identify (service, operation) from
botocore's models (``protocols.py``: X-Amz-Target for json, Action for query, method + path
for rest-json/rest-xml, the rpc-v2-cbor path); an injected fault wins; then a registered
handler; otherwise moto answers unchanged. Errors use each protocol's wire shape so botocore
raises the right ``ClientError`` code. A module that patches moto calls
``_pin.check_moto_version()`` first.

moto internals relied on (re-check on upgrade; pinned to moto 5.2.5 in ``_pin.py``)
-----------------------------------------------------------------------------------
- ``moto.moto_server.werkzeug_app``: ``DomainDispatcherApplication`` (``dispatch.py`` caches its
  ``get_backend_for_host`` and ``moto.core.responses.method_names_from_class``), ``create_backend_app``,
  ``MotoRequestHandler``; ``moto.moto_api._internal.models.moto_api_backend.reset()``;
  ``moto.iam.models.get_account_id_from(access_key)``.
- ``moto.dynamodb``: ``dynamodb_backends[account][region]``, ``DynamoDBBackend.get_table``
  (name or ARN), ``.update_item(table_name, key, ...)``, ``.transact_write_items`` (rolls
  back by swapping in deep copies, then raises), ``.delete_table(name) -> Table``;
  ``Table.put_item(item_attrs, ...) -> Item``, ``Table.delete_item(hash, range) -> Item|None``
  (every item write path goes through these three: PutItem, UpdateItem, DeleteItem,
  BatchWriteItem, TransactWriteItems, PartiQL), ``Table.get_item``, ``hash_key_attr``,
  ``range_key_attr``, ``account_id``, ``region_name``, ``name``, ``created_at``,
  ``stream_shard.items[-1].record``; ``Item.to_json()["Attributes"]`` (binary as raw bytes).
- ``moto.kinesis``: ``kinesis_backends[account][region].streams`` (``Stream.arn``,
  ``.status``, ``.stream_name``) and ``.put_record(arn, name, partition_key, None, b64data)``;
  ``Shard.put_record`` / ``Shard.records`` / ``Record`` (``ext/kinesis.py`` numbers records
  under a lock).
- ``moto.core.serialize.BaseJSONSerializer`` and ``BaseResponse._enrich_response``, and
  ``moto.dynamodb.responses.dynamo_to_dict`` (``ext/fast_responses.py``: DynamoDB items and
  Kinesis records serialized directly, with the bytes moto's shape walk gives).
"""
