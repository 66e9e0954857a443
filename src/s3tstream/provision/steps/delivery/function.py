"""The transform Lambda function and the settings document it is deployed with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from s3tstream.aws import policies
from s3tstream.aws.client import error_code, is_not_found, unless_gone, wait_until
from s3tstream.errors import AwsError
from s3tstream.provision import lambda_zip
from s3tstream.provision.resource import Ctx, Drift, Observed, ResourceSpec
from s3tstream.provision.steps.delivery.common import ident_of, is_lambda_iam_propagation, retry_iam

if TYPE_CHECKING:
    from s3tstream.config.model import Config


def transform_settings(cfg: "Config") -> dict[str, Any]:
    """The transform's settings document (see s3tstream.transform.settings)."""
    columns = _effective_columns(cfg)
    return {
        "database": cfg.names.namespace,
        "table": cfg.names.table,
        "mode": cfg.table.mode,
        "keys": [col for _, col in cfg.key_columns()],
        "columns": columns,
        "extra_column": cfg.table.extra_column,
        "ttl_deletes": cfg.table.ttl_deletes,
    }


def _effective_columns(cfg: "Config") -> list[dict[str, Any]]:
    """The columns the transform maps from DynamoDB attributes: schema.py's effective columns
    (declared ones plus undeclared key columns). The changelog columns and the extra column
    are the transform's own (settings "mode" / "extra_column")."""
    from s3tstream.lake.schema import effective_schema

    return [
        {"name": c.name, "type": c.type_str, "required": c.required, "source": c.source or c.name}
        for c in effective_schema(cfg).columns
        if c.role in ("key", "data")
    ]


def transform_document(cfg: "Config") -> dict[str, Any]:
    """The settings of every table: one table's document (as before many tables), or each
    table's by its DynamoDB table name (transform/routing.py)."""
    scopes = cfg.scopes()
    if len(scopes) == 1:
        return transform_settings(scopes[0])
    return {"routes": {s.names.source_table: transform_settings(s) for s in scopes}}


def transform_deployment(cfg: "Config") -> tuple[dict[str, str], tuple[tuple[str, bytes], ...]]:
    """(environment variables, extra files for the zip) that carry the settings: a document over
    the Lambda environment's 4 KB travels in the zip (a settings change is then a code change)."""
    from s3tstream.transform.routing import deploy

    env, files = deploy(transform_document(cfg))
    return env, tuple(sorted(files.items()))


def transform_environment(cfg: "Config") -> dict[str, str]:
    return transform_deployment(cfg)[0]


def transform_package(cfg: "Config") -> lambda_zip.Package:
    extra = transform_deployment(cfg)[1]
    return lambda_zip.package(extra) if extra else lambda_zip.package()


class TransformFunction(ResourceSpec):
    kind = "lambda-function"
    taggable = True

    @property
    def name(self) -> str:
        return self.ctx.names.transform_function

    def _l(self) -> Any:
        return self.ctx.aws.client("lambda")

    def desired_config(self) -> dict[str, Any]:
        fh = self.ctx.cfg.firehose
        return {
            "Runtime": fh.lambda_runtime,
            "Role": policies.role_arn(ident_of(self.ctx), self.ctx.names.transform_role),
            "Handler": lambda_zip.HANDLER,
            "MemorySize": fh.lambda_memory_mb,
            "Timeout": fh.lambda_timeout_seconds,
            "Environment": {"Variables": transform_environment(self.ctx.cfg)},
            "Description": f"s3tstream {self.ctx.names.stack}: DynamoDB change records -> Iceberg rows",
        }

    def observe(self) -> Observed:
        try:
            r = self._l().get_function(FunctionName=self.name)
        except ClientError as e:
            if is_not_found(e):
                return Observed(exists=False)
            raise
        c = r["Configuration"]
        obs = Observed(exists=True, id=c["FunctionArn"], outputs={"arn": c["FunctionArn"], "code_sha256": c.get("CodeSha256")})
        self.ctx.judge(obs, r.get("Tags", {}))
        fh = self.ctx.cfg.firehose
        pkg = transform_package(self.ctx.cfg)
        if c.get("CodeSha256") != pkg.sha256 or c.get("Architectures", ["x86_64"]) != [fh.lambda_architecture]:
            obs.drift.append(Drift("code", c.get("CodeSha256"), pkg.sha256, "{field}"))
        want = self.desired_config()
        have_env = (c.get("Environment") or {}).get("Variables", {})
        changed = [k for k in ("Runtime", "Role", "Handler", "MemorySize", "Timeout", "Description") if c.get(k) != want[k]]
        if have_env != want["Environment"]["Variables"]:
            changed.append("Environment")
        if changed:
            obs.drift.append(Drift("configuration", new=changed, fmt="{field}: " + ", ".join(changed)))
        have_rc = self._l().get_function_concurrency(FunctionName=self.name).get("ReservedConcurrentExecutions")
        if have_rc != fh.lambda_reserved_concurrency:
            obs.drift.append(Drift("reserved concurrency", have_rc, fh.lambda_reserved_concurrency))
        if c.get("State") not in (None, "Active") or c.get("LastUpdateStatus") == "InProgress":
            obs.drift.append(Drift("state", c.get("State"), "Active", "waiting for the function to be ready"))
        return obs

    def _wait_ready(self, what: str) -> None:
        def check() -> tuple[bool, str]:
            c = self._l().get_function_configuration(FunctionName=self.name)
            state, upd = c.get("State", "Active"), c.get("LastUpdateStatus", "Successful")
            if state == "Failed" or upd == "Failed":
                reason = c.get("StateReason") or c.get("LastUpdateStatusReason") or "no reason given"
                raise AwsError(
                    f"Lambda function {self.name} {what} failed: {reason}",
                    "fix the cause, then run `s3tstream up` again",
                )
            return state == "Active" and upd == "Successful", f"{state}/{upd}"

        wait_until(check, f"function {self.name} {what}", timeout=self.ctx.timeout, interval=self.ctx.poll, progress=self.ctx.progress)

    def create(self) -> dict[str, Any]:
        fh = self.ctx.cfg.firehose
        pkg = transform_package(self.ctx.cfg)
        args = {
            "FunctionName": self.name,
            "Code": {"ZipFile": pkg.data},
            "Architectures": [fh.lambda_architecture],
            "Tags": self.ctx.tags(),
            "Publish": False,
            **self.desired_config(),
        }
        try:
            r = retry_iam(self.ctx, f"creating function {self.name}", lambda: self._l().create_function(**args), is_lambda_iam_propagation)
        except ClientError as e:
            if error_code(e) != "ResourceConflictException":
                raise
            r = self._l().get_function_configuration(FunctionName=self.name)
        self._wait_ready("creation")
        if fh.lambda_reserved_concurrency is not None:
            self._l().put_function_concurrency(FunctionName=self.name, ReservedConcurrentExecutions=fh.lambda_reserved_concurrency)
        # the settings deployed, for `verify` (which maps items as the deployed transform does)
        return {"id": r["FunctionArn"], "arn": r["FunctionArn"], "code_sha256": pkg.sha256,
                "settings": transform_document(self.ctx.cfg)}

    def update(self, observed: Observed) -> dict[str, Any]:
        fh = self.ctx.cfg.firehose
        lam = self._l()
        self._wait_ready("update")
        out: dict[str, Any] = {}
        if observed.drifted("code"):
            pkg = transform_package(self.ctx.cfg)
            lam.update_function_code(FunctionName=self.name, ZipFile=pkg.data, Architectures=[fh.lambda_architecture], Publish=False)
            self._wait_ready("code update")
            out["code_sha256"] = pkg.sha256
            out["settings"] = transform_document(self.ctx.cfg)  # settings too large for the environment ride in the code
        if observed.drifted("configuration"):
            retry_iam(
                self.ctx, f"updating function {self.name}",
                lambda: lam.update_function_configuration(FunctionName=self.name, **self.desired_config()),
                is_lambda_iam_propagation,
            )
            self._wait_ready("configuration update")
            out["settings"] = transform_document(self.ctx.cfg)
        if observed.drifted("reserved concurrency"):
            if fh.lambda_reserved_concurrency is None:
                lam.delete_function_concurrency(FunctionName=self.name)
            else:
                lam.put_function_concurrency(FunctionName=self.name, ReservedConcurrentExecutions=fh.lambda_reserved_concurrency)
        return out

    @classmethod
    def add_tags(cls, ctx: Ctx, record: Any, tags: dict[str, str]) -> None:
        ctx.aws.client("lambda").tag_resource(Resource=record.id, Tags=tags)

    @classmethod
    def live_tags(cls, ctx: Ctx, record: Any) -> dict[str, str] | None:
        got = unless_gone(lambda: ctx.aws.client("lambda").get_function(FunctionName=record.name))
        return None if got is None else dict(got.get("Tags", {}))

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        try:
            ctx.aws.client("lambda").delete_function(FunctionName=record.name)
        except ClientError as e:
            if not is_not_found(e):
                raise

