"""``ecommerce-assets doctor``: what is configured, what is reachable, what is missing (like ``dbt debug``).

For the environment and for each pipeline of ``ecommerce_assets.pipelines.PIPELINES`` the report has one
line per item, with a status word:

* ``set``: a setting that is given, with its value (a secret only as "set, hidden");
* ``ok``: checked for real and working (a folder written to, a bucket found, ``select 1`` answered, an API
  answered with the key, ``dbt --version`` ran);
* ``off``: an optional part that is not turned on, with what turns it on (never a failure);
* ``missing``: a setting, a resource or a tool the configuration needs is absent, with the exact setting or
  command that fixes it;
* ``unreachable``: configured, but the check failed (connection refused, key refused, timeout, access
  denied), with the reason.

Every check runs on its own: one that raises becomes that item's ``unreachable`` line and the others still
run. The report is ``ok`` (exit 0) when no line is ``missing`` or ``unreachable``.

No secret is printed: ``ECOMMERCE_CATALOG_API_KEY``, ``ECOMMERCE_INGEST_TOKENS``, ``ECOMMERCE_INGEST_TOKEN``
are shown as "set", a password inside a DSN or URL as ``***``, ``PGPASSWORD`` only as "set"; and, as a last
guard, every known secret value (those, the AWS secret key) is replaced by ``***`` in every line, error
messages included.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ecommerce_assets.pipelines import PIPELINES, Pipeline, landing_prefix, stream_off_reason, turn_on_hint
from ecommerce_assets.settings import Settings, declared_settings, get_settings
from ecommerce_assets.storage import zones

STATUSES: tuple[str, ...] = ("ok", "set", "off", "missing", "unreachable")
FAILING: frozenset[str] = frozenset({"missing", "unreachable"})
ENVIRONMENT = "environment"
CLOUDFORMATION = "deploy/cloudformation/ecommerce-assets.yaml"  # creates every AWS resource (deploy/README.md)
TIMEOUT_SECONDS = 5.0  # connect timeout of every network check
DBT_TIMEOUT_SECONDS = 180.0
_LANDING_COUNT_CAP = 1000  # listing stops here: "1000+ files"


@dataclass(frozen=True)
class Check:
    """One line of the report: ``part`` (environment or a pipeline), ``item``, ``status``, ``detail``, ``fix``."""

    part: str
    item: str
    status: str
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status in FAILING


@dataclass
class DoctorReport:
    """Everything ``doctor`` found, in order: the environment first, then one part per pipeline."""

    env: str
    parts: list[tuple[str, str]]  # (part, title), in print order
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every configured part is reachable (``off`` is not a failure)."""
        return not any(c.failed for c in self.checks)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.failed]

    def lines(self) -> list[str]:
        """The report for people: one section per part, one line per item, then a summary line."""
        out = [f"ecommerce-assets doctor ({self.env} mode)"]
        for part, title in self.parts:
            out.append("")
            out.append(f"{part}: {title}" if title else part)
            for c in self.checks:
                if c.part != part:
                    continue
                line = f"  {c.status:<11}  {c.item}{'=' if c.status == 'set' else ': '}{c.detail}"
                if c.fix:
                    line += f"  -> {c.fix}"
                out.append(line)
        out.append("")
        counts = {s: sum(1 for c in self.checks if c.status == s) for s in STATUSES}
        tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        if self.ok:
            out.append(f"all configured parts are reachable ({tally})")
        else:
            out.append(f"{len(self.problems)} problem(s) to fix ({tally}):")
            out.extend(f"  {c.part}: {c.item} is {c.status}" for c in self.problems)
        return out

    def render(self) -> str:
        return "\n".join(self.lines())

    def as_dict(self) -> dict[str, Any]:
        """For machines (``doctor --json``)."""
        return {
            "ok": self.ok,
            "env": self.env,
            "parts": [
                {"part": part, "title": title,
                 "checks": [{k: v for k, v in asdict(c).items() if k != "part"} for c in self.checks if c.part == part]}
                for part, title in self.parts
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


# --- secrets ------------------------------------------------------------------------------------
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^@/\s]*@")
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&\s]*", re.IGNORECASE)


def _dsn_password(dsn: str | None) -> str | None:
    if not dsn:
        return None
    try:
        from psycopg.conninfo import conninfo_to_dict

        return conninfo_to_dict(dsn).get("password") or None  # type: ignore[return-value]
    except Exception:
        return None


def mask_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URI userinfo, ``password=``, ``?password=``)."""
    masked = _QUERY_PASSWORD.sub(r"\1***", _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", dsn)))
    password = _dsn_password(dsn)
    if password and password in masked:
        return "(set; it carries a password, hidden)"
    return masked


def secret_values(settings: Settings) -> list[str]:
    """Every secret value doctor knows of, longest first (scrubbed from every line)."""
    values: list[str | None] = [
        settings.catalog_api_key.get_secret_value() if settings.catalog_api_key else None,
        *settings.ingest_tokens,
        settings.ingest_token,
        _dsn_password(settings.warehouse_dsn),
        *(os.environ.get(name) for name in (
            "PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "ECOMMERCE_PG_PASSWORD",
            "ECOMMERCE_REDSHIFT_PASSWORD",
        )),
    ]
    return sorted({v for v in values if v and len(v) >= 3}, key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    for value in secrets:
        text = text.replace(value, "***")
    return text


def _display(row: dict[str, Any], value: Any) -> str:
    """A setting's value as doctor prints it: secrets only as set, passwords in DSNs/URLs masked."""
    if row["secret"]:
        if isinstance(value, tuple):
            return f"(set: {len(value)} value(s), hidden)"
        return "(set, hidden)"
    if row["field"] == "warehouse_dsn":
        return mask_dsn(str(value))
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return _URL_PASSWORD.sub(r"\1***@", str(value))


def configured_settings(settings: Settings, groups: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(environment variable, value shown)`` of the settings of ``groups`` that are set."""
    rows = []
    for row in declared_settings():
        if row["group"] not in groups or row["field"] not in settings.model_fields_set:
            continue
        name = next((n for n in row["env"] if os.environ.get(n)), row["env"][0])
        rows.append((name, _display(row, getattr(settings, row["field"]))))
    return rows


# --- small helpers ------------------------------------------------------------------------------
def _reason(exc: BaseException) -> str:
    """One readable line for an exception (the first line of its message, whitespace squeezed)."""
    text = str(exc).strip()
    first = " ".join(text.splitlines()[0].split()) if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _aws_reason(exc: BaseException) -> tuple[str, str]:
    """(reason, code) of a boto3 error: the service's error code when there is one."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or "").strip()
        return (f"{code}: {message}" if message else code) or _reason(exc), code
    return _reason(exc), type(exc).__name__


def _aws_fix(code: str) -> str:
    if code in ("NoCredentialsError", "PartialCredentialsError"):
        return "give AWS credentials: AWS_PROFILE, AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY, or an IAM role"
    if "AccessDenied" in code or code in ("403", "UnauthorizedOperation", "UnrecognizedClientException",
                                          "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException"):
        return "the credentials lack a permission: attach the policies of deploy/iam/ (see deploy/README.md)"
    if code in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ReadTimeoutError"):
        return "check AWS_ENDPOINT_URL / AWS_REGION and the network"
    return ""


def _aws_config() -> Any:
    from botocore.config import Config

    return Config(connect_timeout=TIMEOUT_SECONDS, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})


def _aws_client(service: str, settings: Settings, region: str | None = None) -> Any:
    import boto3

    return boto3.client(service, region_name=region or settings.aws_region, endpoint_url=settings.aws_endpoint_url,
                        config=_aws_config())


def _quick_lake_client(lake: Any) -> Any:
    """The lake's S3 client again (the same session, region, endpoint and options) with short timeouts and
    few retries, so that an endpoint that does not answer makes doctor wait seconds, not minutes."""
    import boto3

    client = lake.client
    session = boto3.session.Session()
    return session.client("s3", region_name=client.meta.region_name, endpoint_url=client.meta.endpoint_url,
                          config=client.meta.config.merge(_aws_config()))


def probe_dir(path: Path) -> tuple[bool, str]:
    """Whether files can be created in ``path`` (a temporary file is written and removed) or, when it does
    not exist yet, in its nearest existing parent folder (it is created on first use)."""
    from ecommerce_assets.storage.lake import TMP_PREFIX

    target = path
    while not target.exists() and target.parent != target:
        target = target.parent
    if not target.is_dir():
        return False, f"{target} is not a folder"
    try:
        fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}doctor-", dir=target)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return False, f"cannot write in {target}: {exc.strerror or exc}"
    return True, "writable" if target == path else f"does not exist yet, will be created ({target} is writable)"


@functools.lru_cache(maxsize=4)
def dbt_version_output(executable: str) -> tuple[int, str]:
    """``<dbt> --version``: (exit code, output). dbt also asks PyPI for its latest version; that request
    is pointed at a closed local port so doctor never goes online (the answer is not needed)."""
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "NO_PROXY": "", "no_proxy": "", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    proc = subprocess.run([executable, "--version"], capture_output=True, text=True, env=env,
                          timeout=DBT_TIMEOUT_SECONDS, check=False)
    return proc.returncode, (proc.stdout or "") + (proc.stderr or "")


class _BackgroundCall:
    """Run a slow check (``dbt --version``) in a thread while the others run."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True, name="doctor-dbt")
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._result = fn()
        except BaseException as exc:  # re-raised in get(), inside that check's guard
            self._error = exc

    def get(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


# --- the checks ---------------------------------------------------------------------------------
class _Doctor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.checks: list[Check] = []
        self.resources: dict[str, Any] = {}
        self.missing: dict[str, str] = {}
        self.lake_ok = False

    # bookkeeping
    def add(self, part: str, item: str, status: str, detail: str, fix: str = "") -> None:
        assert status in STATUSES, status
        self.checks.append(Check(part, item, status, detail, fix))

    def guard(self, part: str, item: str, check: Callable[[], Any], default: Any = None) -> Any:
        """Run one check; an exception becomes that item's ``unreachable`` line."""
        try:
            return check()
        except Exception as exc:
            reason, code = _aws_reason(exc)
            self.add(part, item, "unreachable", reason, _aws_fix(code))
            return default

    def settings_lines(self, part: str, groups: tuple[str, ...], note: str = "") -> None:
        for name, value in configured_settings(self.settings, groups):
            self.add(part, name, "set", value + note)

    # environment
    def build_resources(self) -> None:
        from ecommerce_assets.resources import build_resources
        from ecommerce_assets.resources.unconfigured import unconfigured

        try:
            self.resources = build_resources(self.settings)
        except Exception as exc:  # e.g. a DSN with a password: the warehouse check below says so and why
            from ecommerce_assets.storage.warehouses.postgres import DsnPasswordError

            if not isinstance(exc, DsnPasswordError):
                self.add(ENVIRONMENT, "resources", "missing", f"the resources could not be built: {_reason(exc)}",
                         "fix the setting named in the message")
            return
        self.missing = unconfigured(self.resources)

    def _engine(self) -> None:
        """The heavy transforms' engine (``ECOMMERCE_ENGINE``): for ``spark``, whether local Spark can start here."""
        s = self.settings
        if s.engine == "duckdb":
            self.add(ENVIRONMENT, "engine", "ok", "duckdb: the heavy transforms run in the run worker")
            return
        from ecommerce_assets.resources.spark import local_spark_problem

        platform = s.spark_platform
        if (s.env == "aws") != (platform != "local"):
            self.add(ENVIRONMENT, "engine", "missing",
                     f"spark on {platform}: " + ("local Spark writes to a local lake only" if s.env == "aws"
                                                 else "Glue and EMR Serverless need the S3 lake (aws mode)"),
                     "set ECOMMERCE_SPARK_PLATFORM=glue or emr-serverless" if s.env == "aws"
                     else "set ECOMMERCE_SPARK_PLATFORM=local")
            return
        if platform == "local":
            problem = local_spark_problem()
            if problem:
                self.add(ENVIRONMENT, "engine", "missing", f"spark: {problem}", "install it, or ECOMMERCE_ENGINE=duckdb")
                return
            self.add(ENVIRONMENT, "engine", "ok", f"spark: PySpark jobs through Dagster Pipes on {s.spark_master}")
            return
        needed = ["ECOMMERCE_SPARK_ROLE_ARN"] if not s.spark_role_arn else []
        if platform == "emr-serverless" and not s.emr_application_id:
            needed.append("ECOMMERCE_EMR_APPLICATION_ID")
        if needed:
            self.add(ENVIRONMENT, "engine", "missing", f"spark on {platform}: {' and '.join(needed)} not set",
                     "see deploy/README.md, section 5")
            return
        self.add(ENVIRONMENT, "engine", "ok", f"spark on {platform}: jobs launched through Dagster Pipes, "
                 f"scripts in the lake's code/spark_jobs/, role {s.spark_role_arn}")

    def environment(self) -> None:
        s = self.settings
        self.settings_lines(ENVIRONMENT, ("platform", "aws", "alerts", "deploy") if s.env == "aws" else ("platform", "alerts"))
        if s.env == "local":
            self.settings_lines(ENVIRONMENT, ("aws",), "  (aws mode only: not used locally)")
            self.add(ENVIRONMENT, "mode", "ok", "local: the lake is a folder, the warehouse a DuckDB file, under the data dir",
                     "")
        else:
            self.add(ENVIRONMENT, "mode", "ok", f"aws: S3 lake, {s.warehouse_kind} warehouse, region {s.aws_region}"
                     + (f", endpoint {s.aws_endpoint_url}" if s.aws_endpoint_url else ""))
        self.guard(ENVIRONMENT, "data dir", lambda: self._dir_check("data dir", s.data_dir, "ECOMMERCE_DATA_DIR"))
        self.guard(ENVIRONMENT, "DAGSTER_HOME", lambda: self._dir_check("DAGSTER_HOME", s.dagster_home_dir, "DAGSTER_HOME"))
        source = "ECOMMERCE_SENSORS" if s.sensors else f"the default in {s.env} mode"
        if s.sensors_on:
            self.add(ENVIRONMENT, "sensors", "ok",
                     f"on ({source}): the arrival sensors and the automation sensor run in the daemon")
        else:
            self.add(ENVIRONMENT, "sensors", "off",
                     f"off ({source}): arrival sensors and automation start stopped; nothing runs without a click",
                     "set ECOMMERCE_SENSORS=on (or start them in the UI)")
        self.guard(ENVIRONMENT, "engine", self._engine)
        if s.env == "aws":
            self.guard(ENVIRONMENT, "aws credentials", self._aws_credentials)
        self.guard(ENVIRONMENT, "lake", self._lake)
        self.guard(ENVIRONMENT, "warehouse", self._warehouse)
        self.guard(ENVIRONMENT, "alerts", self._alerts)
        for key, problem in sorted(self.missing.items()):  # any other placeholder resource: it fails only its steps
            if key not in ("lake", "warehouse", "catalog_api", "products_api"):
                self.add(ENVIRONMENT, f"resource {key}", "off", "not configured", problem)

    def _dir_check(self, item: str, path: Path, setting: str) -> None:
        ok, detail = probe_dir(path)
        if ok:
            self.add(ENVIRONMENT, item, "ok", f"{path}: {detail}")
        else:
            self.add(ENVIRONMENT, item, "unreachable", f"{path}: {detail}",
                     f"set {setting} to a folder you can write to, or fix its permissions")

    def _aws_credentials(self) -> None:
        import boto3

        credentials = boto3.session.Session().get_credentials()
        if credentials is None:
            self.add(ENVIRONMENT, "aws credentials", "missing", "boto3 finds no AWS credentials",
                     _aws_fix("NoCredentialsError"))
        else:
            self.add(ENVIRONMENT, "aws credentials", "ok", f"found ({credentials.method}; never shown)")

    def _lake(self) -> None:
        s = self.settings
        if s.env == "local":
            from ecommerce_assets.storage.lake import LocalLake

            self.resources.setdefault("lake", LocalLake(base_dir=str(s.lake_dir)))
            ok, detail = probe_dir(s.lake_dir)
            self.lake_ok = ok
            self.add(ENVIRONMENT, "lake", "ok" if ok else "unreachable", f"{s.lake_dir}: {detail}",
                     "" if ok else "set ECOMMERCE_DATA_DIR to a folder you can write to")
            return
        if "lake" in self.missing or not s.s3_bucket:
            self.add(ENVIRONMENT, "lake", "missing", self.missing.get("lake", "aws mode needs ECOMMERCE_S3_BUCKET"),
                     f"set ECOMMERCE_S3_BUCKET ({CLOUDFORMATION} creates the bucket; see deploy/README.md)")
            return
        lake = self.resources.get("lake")
        if lake is None:
            from ecommerce_assets.storage.lakes import build_lake

            lake = build_lake(s)
            self.resources["lake"] = lake
        where = lake.uri("")
        try:
            _quick_lake_client(lake).head_bucket(Bucket=s.s3_bucket)
        except Exception as exc:
            reason, code = _aws_reason(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                self.add(ENVIRONMENT, "lake", "missing", f"bucket {s.s3_bucket} not found ({where})",
                         f"create it with {CLOUDFORMATION} (see deploy/README.md), or set ECOMMERCE_S3_BUCKET to an "
                         "existing bucket")
            else:
                self.add(ENVIRONMENT, "lake", "unreachable", f"bucket {s.s3_bucket}: {reason}", _aws_fix(code))
            return
        self.lake_ok = True
        self.add(ENVIRONMENT, "lake", "ok", f"{where}: bucket {s.s3_bucket} found")

    def _warehouse(self) -> None:
        s = self.settings
        kind = s.warehouse_kind
        if s.env == "local":
            self._duckdb()
        elif kind == "duckdb":
            self.add(ENVIRONMENT, "warehouse", "missing", "ECOMMERCE_WAREHOUSE=duckdb is the local warehouse only",
                     "set ECOMMERCE_WAREHOUSE to postgres, redshift or athena in aws mode")
        elif kind == "athena":
            self._athena()
        else:
            self._postgres(kind)

    def _duckdb(self) -> None:
        import duckdb

        path = self.settings.warehouse_path
        if not path.exists():
            ok, detail = probe_dir(path.parent)
            self.add(ENVIRONMENT, "warehouse", "ok" if ok else "unreachable",
                     f"duckdb {path}: " + ("not created yet; the first run creates it" if ok else detail),
                     "" if ok else "set ECOMMERCE_DATA_DIR to a folder you can write to")
            return
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.Error as exc:
            self.add(ENVIRONMENT, "warehouse", "unreachable", f"duckdb {path}: {_reason(exc)}",
                     "another process may hold the file (a run, or the UI's code server): try again when it is done")
            return
        try:
            n = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN ('information_schema', 'pg_catalog')"
            ).fetchone()[0]  # type: ignore[index]
        finally:
            con.close()
        self.add(ENVIRONMENT, "warehouse", "ok", f"duckdb {path}: opened, {n} table(s)")

    def _postgres(self, kind: str) -> None:
        import psycopg

        from ecommerce_assets.storage.warehouses.postgres import dsn_has_password

        s = self.settings
        if not s.warehouse_dsn:
            self.add(ENVIRONMENT, "warehouse", "missing", f"ECOMMERCE_WAREHOUSE={kind} needs a connection string",
                     "set ECOMMERCE_WAREHOUSE_DSN (e.g. postgresql://etl@host:5432/ecommerce; the password in "
                     "PGPASSWORD or ~/.pgpass)")
            return
        shown = mask_dsn(s.warehouse_dsn)
        if dsn_has_password(s.warehouse_dsn, strict=False):
            self.add(ENVIRONMENT, "warehouse", "missing", f"{kind} {shown}: the DSN carries a password, which is refused "
                     "(Dagster would keep it in every run's snapshot)",
                     "remove the password from ECOMMERCE_WAREHOUSE_DSN and set PGPASSWORD (or use ~/.pgpass)")
            return
        if kind == "redshift" and not s.redshift_iam_role:
            self.add(ENVIRONMENT, "warehouse role", "missing", "Redshift's COPY needs a role to read the lake",
                     "set ECOMMERCE_REDSHIFT_IAM_ROLE (deploy/iam/redshift-copy-role.json)")
        password = "PGPASSWORD set, hidden" if os.environ.get("PGPASSWORD") else "no PGPASSWORD: libpq reads ~/.pgpass"
        try:
            with psycopg.connect(s.warehouse_dsn, connect_timeout=int(TIMEOUT_SECONDS), autocommit=True) as con:
                row = con.execute("SELECT 1, current_database(), current_user").fetchone()
        except psycopg.Error as exc:
            self.add(ENVIRONMENT, "warehouse", "unreachable", f"{kind} {shown}: {_reason(exc)}",
                     "check ECOMMERCE_WAREHOUSE_DSN (host, port, database, user), that the server accepts "
                     "connections from here, and the password (PGPASSWORD or ~/.pgpass)")
            return
        assert row is not None
        self.add(ENVIRONMENT, "warehouse", "ok",
                 f"{kind} {shown}: select 1 answered (database {row[1]}, user {row[2]}; {password})")

    def _athena(self) -> None:
        s = self.settings
        athena = _aws_client("athena", s)
        try:
            group = athena.get_work_group(WorkGroup=s.athena_workgroup)["WorkGroup"]
        except Exception as exc:
            reason, code = _aws_reason(exc)
            status = "missing" if code == "InvalidRequestException" else "unreachable"
            self.add(ENVIRONMENT, "warehouse", status, f"athena workgroup {s.athena_workgroup}: {reason}",
                     "set ECOMMERCE_ATHENA_WORKGROUP to an existing workgroup" if status == "missing" else _aws_fix(code))
        else:
            self.add(ENVIRONMENT, "warehouse", "ok",
                     f"athena workgroup {s.athena_workgroup} found ({group.get('State', 'state unknown')})")
        glue = _aws_client("glue", s)
        try:
            glue.get_database(Name=s.glue_database)
        except Exception as exc:
            reason, code = _aws_reason(exc)
            if code == "EntityNotFoundException":
                self.add(ENVIRONMENT, "glue database", "missing", f"{s.glue_database} does not exist",
                         f"create it with {CLOUDFORMATION} (see deploy/README.md), or set ECOMMERCE_GLUE_DATABASE")
            else:
                self.add(ENVIRONMENT, "glue database", "unreachable", f"{s.glue_database}: {reason}", _aws_fix(code))
        else:
            self.add(ENVIRONMENT, "glue database", "ok", f"{s.glue_database} found")

    def _alerts(self) -> None:
        s = self.settings
        if s.env == "local":
            self.add(ENVIRONMENT, "alerts", "ok", f"written to {s.state_dir / 'alerts.log'}")
            return
        if not s.alerts_topic_arn:
            from ecommerce_assets.resources.notifier import ALERTS_TO_LOG_WARNING

            self.add(ENVIRONMENT, "alerts", "off", ALERTS_TO_LOG_WARNING.split(":")[0],
                     f"set ECOMMERCE_ALERTS_TOPIC_ARN ({CLOUDFORMATION} creates the topic; see deploy/README.md)")
            return
        arn = s.alerts_topic_arn
        region = arn.split(":")[3] if arn.count(":") >= 5 else s.aws_region
        try:
            _aws_client("sns", s, region).get_topic_attributes(TopicArn=arn)
        except Exception as exc:
            reason, code = _aws_reason(exc)
            if code in ("NotFound", "NotFoundException"):
                self.add(ENVIRONMENT, "alerts", "missing", f"SNS topic {arn} does not exist",
                         f"create it with {CLOUDFORMATION} (see deploy/README.md), or unset ECOMMERCE_ALERTS_TOPIC_ARN "
                         "(alerts then go to the log)")
            else:
                self.add(ENVIRONMENT, "alerts", "unreachable", f"SNS topic {arn}: {reason}", _aws_fix(code))
        else:
            self.add(ENVIRONMENT, "alerts", "ok", f"SNS topic {arn} found")
        if s.alerts_dlq_url:
            try:
                _aws_client("sqs", s, region).get_queue_attributes(QueueUrl=s.alerts_dlq_url, AttributeNames=["QueueArn"])
            except Exception as exc:
                reason, code = _aws_reason(exc)
                missing = "NonExistentQueue" in code
                self.add(ENVIRONMENT, "alerts dead-letter queue", "missing" if missing else "unreachable",
                         f"{s.alerts_dlq_url}: {reason}",
                         f"create it with {CLOUDFORMATION} (see deploy/README.md), or unset ECOMMERCE_ALERTS_DLQ_URL"
                         if missing else _aws_fix(code))
            else:
                self.add(ENVIRONMENT, "alerts dead-letter queue", "ok", f"{s.alerts_dlq_url} found")

    # pipelines
    def landing_root(self) -> str:
        from ecommerce_assets.resources.unconfigured import UnconfiguredResource

        lake = self.resources.get("lake")
        if lake is not None and not isinstance(lake, UnconfiguredResource):
            return str(lake.uri(zones.LANDING))
        s = self.settings
        if s.env == "local":
            return f"{s.lake_dir}/landing/"
        prefix = f"{s.s3_prefix}/" if s.s3_prefix else ""
        return f"s3://{s.s3_bucket or '<ECOMMERCE_S3_BUCKET>'}/{prefix}landing/"

    def landing(self, part: str, source: str) -> int:
        """One line for a landing folder: how many files it holds, or that nothing landed yet."""
        key = landing_prefix(source)
        where = self.landing_root() + f"{source}/"
        if not self.lake_ok:  # the lake's own line is the problem; its landing folders add no new one
            return 0
        n = sum(1 for _ in itertools.islice(self.resources["lake"].list_objects(key), _LANDING_COUNT_CAP))
        if n:
            more = "+" if n >= _LANDING_COUNT_CAP else ""
            self.add(part, f"landing {source}", "ok", f"{where}: {n}{more} file(s)")
        else:
            self.add(part, f"landing {source}", "off", f"{where}: nothing landed yet")
        return n

    def pipeline(self, p: Pipeline, dbt: _BackgroundCall) -> None:
        self.settings_lines(p.name, (p.name,))
        at = len(self.checks)  # the pipeline's own line goes first, once its parts are known
        files = sum(self.guard(p.name, f"landing {source}", functools.partial(self.landing, p.name, source), 0)
                    for source in p.landing)
        parts = getattr(self, f"_{p.name}", None)
        on_by_settings = parts(p, dbt) if parts is not None else ""
        hint = turn_on_hint(p, self.landing_root())
        unlisted = p.landing and not self.lake_ok
        if files or on_by_settings:
            why = ([f"{files} file(s) landed"] if files else []) + ([on_by_settings] if on_by_settings else [])
            line = Check(p.name, "pipeline", "ok", f"on: {', '.join(why)}")
        elif unlisted:
            line = Check(p.name, "pipeline", "off", f"landing not listed: the lake is not reachable (see {ENVIRONMENT})",
                         hint)
        else:
            line = Check(p.name, "pipeline", "off", "nothing to process yet", hint)
        self.checks.insert(at, line)

    def _catalog(self, p: Pipeline, dbt: _BackgroundCall) -> str:
        from ecommerce_assets.resources.catalog_api import catalog_api_resource
        from ecommerce_assets.resources.unconfigured import UnconfiguredResource

        resource = catalog_api_resource(self.settings)
        if isinstance(resource, UnconfiguredResource):
            self.add(p.name, "catalog API", "off", "not configured", resource.problem)
            return ""
        self.guard(p.name, "catalog API", functools.partial(self._catalog_api, p, resource))
        return "catalog API configured"

    def _catalog_api(self, p: Pipeline, resource: Any) -> None:
        from ecommerce_assets.defs.catalog.partitions import load_sellers
        from ecommerce_assets.resources.catalog_api import (
            KEY_ENV_VAR,
            CatalogApiError,
            CatalogAuthError,
            CatalogClient,
        )

        s = self.settings
        try:
            sellers = load_sellers(s)
        except Exception as exc:
            self.add(p.name, "sellers", "missing", _reason(exc), "fix ECOMMERCE_SELLERS_FILE, or set ECOMMERCE_SELLERS")
            sellers = []
        else:
            if sellers:
                source = "ECOMMERCE_SELLERS" if s.sellers else f"the sellers file {s.sellers_file or '(the packaged demo sellers)'}"
                self.add(p.name, "sellers", "ok", f"{len(sellers)} seller(s) from {source}: "
                         + ", ".join(x.seller_id for x in sellers[:5]) + (" ..." if len(sellers) > 5 else ""))
            else:
                self.add(p.name, "sellers", "missing", "no seller to fetch",
                         "set ECOMMERCE_SELLERS=<seller id>[,<seller id>] (or ECOMMERCE_SELLERS_FILE)")
        if not sellers:
            self.add(p.name, "catalog API", "off", f"{resource.base_url}: not asked (no seller to ask for)")
            return
        key = s.catalog_api_key.get_secret_value() if s.catalog_api_key else ""
        client = CatalogClient(base_url=resource.base_url, api_key=key, host=s.catalog_api_host, max_retries=0,
                               timeout_seconds=TIMEOUT_SECONDS * 2, requests_per_second=0)
        seller = sellers[0]
        where = f"{resource.base_url} (GET /search?seller_id={seller.seller_id}&page=1, key from {KEY_ENV_VAR})"
        try:
            page = client.fetch_page(seller.seller_id, 1, seller.query)
        except CatalogAuthError as exc:
            code = re.search(r"HTTP (\d+)", str(exc))
            self.add(p.name, "catalog API", "unreachable",
                     f"{where}: the key was refused (HTTP {code.group(1) if code else '401/403'})",
                     f"set {KEY_ENV_VAR} to a valid key (and ECOMMERCE_CATALOG_API_HOST to the API's host)")
            return
        except CatalogApiError as exc:
            rate_limited = "http_429" in str(exc)
            last = re.search(r"\(last: (\w+)\)", str(exc))  # the client's message repeats the whole URL
            self.add(p.name, "catalog API", "ok" if rate_limited else "unreachable",
                     f"{where}: " + ("answered, but rate-limited right now (HTTP 429)" if rate_limited
                                     else f"no answer ({last.group(1)})" if last else _reason(exc)),
                     "" if rate_limited else "check ECOMMERCE_CATALOG_API_URL (the API's base URL) and the network")
            return
        finally:
            client.close()
        if page.products is None:
            self.add(p.name, "catalog API", "unreachable", f"{where}: answered HTTP {page.status_code} but no product list",
                     "check ECOMMERCE_CATALOG_API_URL: it is the API's base URL, without /search")
        else:
            total = f" of {page.total_products}" if page.total_products is not None else ""
            self.add(p.name, "catalog API", "ok", f"{where}: answered with the key, {page.products}{total} product(s) on page 1")

    def _orders(self, p: Pipeline, dbt: _BackgroundCall) -> str:
        on = ""
        if self.settings.products_api_url:
            on = "products API configured"
            self.guard(p.name, "products API", functools.partial(self._products_api, p))
        else:
            self.add(p.name, "products API", "off", "optional, not configured (files alone build the marts)",
                     "set ECOMMERCE_PRODUCTS_API_URL, then `ecommerce-assets run --fetch`")
        self.guard(p.name, "dbt", functools.partial(self._dbt, p, dbt))
        return on

    def _products_api(self, p: Pipeline) -> None:
        from ecommerce_assets.resources.products_api import ProductsApi, ProductsApiError, validate_products

        url = self.settings.products_api_url
        assert url
        api = ProductsApi(base_url=url, timeout_seconds=TIMEOUT_SECONDS * 2, max_attempts=1)
        try:
            body, _ = api.get("/products")
            items, problems = validate_products(body, source=f"GET {url.rstrip('/')}/products")
        except (ProductsApiError, ValueError) as exc:
            self.add(p.name, "products API", "unreachable", f"{url}: {_reason(exc)}",
                     "check ECOMMERCE_PRODUCTS_API_URL: the base URL that serves /products")
            return
        self.add(p.name, "products API", "ok", f"{url}: GET /products answered {len(items)} product(s)"
                 + (f", {len(problems)} with problems (quarantined when fetched)" if problems else ""))

    def _dbt(self, p: Pipeline, dbt: _BackgroundCall) -> None:
        import yaml

        from ecommerce_assets.resources.dbt import DBT_PROJECT_DIR, dbt_connection_env, dbt_executable

        exe = dbt_executable()
        if not Path(exe).is_file():
            self.add(p.name, "dbt", "missing", f"no dbt beside {sys.executable} nor on PATH",
                     "install the project's environment (`uv sync`, or `pip install -e .`)")
            return
        code, output = dbt.get()
        installed = re.search(r"installed:\s*(\S+)", output)
        if code != 0 or not installed:
            tail = " ".join(output.strip().splitlines()[-1:]) if output.strip() else f"exit code {code}"
            self.add(p.name, "dbt", "unreachable", f"{exe} --version failed: {tail}",
                     "reinstall the project's environment (`uv sync`)")
            return
        plugins = dict(re.findall(r"^\s*-\s*([A-Za-z0-9_]+):\s*(\S+)", output.split("Plugins:", 1)[-1], re.MULTILINE))
        target = self.settings.dbt_target
        profiles = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text(encoding="utf-8")) or {}
        outputs = next(iter(profiles.values()), {}).get("outputs", {}) if profiles else {}
        if target not in outputs:
            self.add(p.name, "dbt", "missing", f"dbt {installed.group(1)} ({exe}); target {target} is not in "
                     f"{DBT_PROJECT_DIR / 'profiles.yml'} (targets: {', '.join(outputs)})",
                     f"set ECOMMERCE_DBT_TARGET to one of {', '.join(outputs)}")
            return
        adapter = str(outputs[target].get("type", target))
        if adapter not in plugins:
            self.add(p.name, "dbt", "missing", f"dbt {installed.group(1)} ({exe}); target {target} needs the "
                     f"{adapter} adapter, which is not installed", f"install dbt-{adapter} in the project's environment")
            return
        connection = ""
        if target in ("postgres", "redshift"):
            from ecommerce_assets.storage.warehouses.postgres import DsnPasswordError

            try:
                values = dbt_connection_env(self.settings)
            except DsnPasswordError:
                self.add(p.name, "dbt", "missing", f"dbt {installed.group(1)} ({exe}), target {target}: its connection "
                         f"comes from ECOMMERCE_WAREHOUSE_DSN, which carries a password (see {ENVIRONMENT}: warehouse)",
                         "remove the password from ECOMMERCE_WAREHOUSE_DSN and set PGPASSWORD (or use ~/.pgpass)")
                return
            host = next((v for k, v in values.items() if k.endswith("_HOST")), None)
            db = next((v for k, v in values.items() if k.endswith("_DB")), None)
            connection = (f", connects to {host} database {db} (from ECOMMERCE_WAREHOUSE_DSN)" if values
                          else ", no connection yet (ECOMMERCE_WAREHOUSE_DSN is not set)")
        self.add(p.name, "dbt", "ok", f"dbt {installed.group(1)} ({exe}), target {target} "
                 f"({adapter} adapter {plugins[adapter]}){connection}")

    def _stream(self, p: Pipeline, dbt: _BackgroundCall) -> str:
        s = self.settings
        if not s.stream_configured:
            self.add(p.name, "stream", "off", "no Kinesis stream configured", str(stream_off_reason(s)).removeprefix("off: "))
            return ""
        if s.env == "local":
            self.guard(p.name, "stream", functools.partial(self._local_sqlite, p, "stream", s.state_dir / "stream.sqlite"))
            self.guard(p.name, "key-value tables", functools.partial(self._local_sqlite, p, "key-value tables",
                                                                     s.state_dir / "kv.sqlite"))
        else:
            self.guard(p.name, "stream", functools.partial(self._kinesis, p))
            for table in ("invoices", "customers"):
                self.guard(p.name, f"table {s.kv_table_prefix}{table}", functools.partial(self._dynamodb, p, table))
        if s.ingest_tokens:
            self.add(p.name, "ingest API", "ok", f"accepts {len(s.ingest_tokens)} bearer token(s) (hidden)")
        else:
            self.add(p.name, "ingest API", "off", "no ECOMMERCE_INGEST_TOKENS: the ingestion API is open and only "
                     "listens on loopback", "set ECOMMERCE_INGEST_TOKENS to accept clients from elsewhere")
        return "the stream is configured" if s.env == "aws" else "the local stream log"

    def _local_sqlite(self, p: Pipeline, item: str, path: Path) -> None:
        import sqlite3

        if not path.exists():
            ok, detail = probe_dir(path.parent)
            self.add(p.name, item, "ok" if ok else "unreachable",
                     f"{path}: " + ("not created yet; `ecommerce-assets ingest-api` creates it" if ok else detail),
                     "" if ok else "set ECOMMERCE_DATA_DIR to a folder you can write to")
            return
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=TIMEOUT_SECONDS)
        try:
            if item == "stream":
                row = con.execute("SELECT value FROM stream_meta WHERE key = 'shards'").fetchone()
                n = con.execute("SELECT count(*) FROM records").fetchone()[0]
                if row is not None and int(row[0]) != self.settings.stream_shards:
                    self.add(p.name, item, "unreachable", f"{path} was created with {row[0]} shards, "
                             f"ECOMMERCE_STREAM_SHARDS is {self.settings.stream_shards}",
                             f"set ECOMMERCE_STREAM_SHARDS={row[0]} (or use a new data dir)")
                    return
                self.add(p.name, item, "ok", f"{path}: {n} record(s)")
            else:
                tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
                self.add(p.name, item, "ok", f"{path}: {len(tables)} table(s)")
        finally:
            con.close()

    def _kinesis(self, p: Pipeline) -> None:
        name = self.settings.stream_name
        try:
            summary = _aws_client("kinesis", self.settings).describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        except Exception as exc:
            reason, code = _aws_reason(exc)
            if code == "ResourceNotFoundException":
                self.add(p.name, "stream", "missing", f"the Kinesis stream {name} does not exist",
                         f"create it with {CLOUDFORMATION}, parameter StreamName={name} (see deploy/README.md), or "
                         "unset ECOMMERCE_STREAM_NAME to turn the stream pipeline off")
            else:
                self.add(p.name, "stream", "unreachable", f"Kinesis stream {name}: {reason}", _aws_fix(code))
            return
        status = summary.get("StreamStatus", "?")
        shards = summary.get("OpenShardCount", "?")
        self.add(p.name, "stream", "ok" if status in ("ACTIVE", "UPDATING") else "unreachable",
                 f"Kinesis stream {name}: {status}, {shards} open shard(s)",
                 "" if status in ("ACTIVE", "UPDATING") else "wait until the stream is ACTIVE")

    def _dynamodb(self, p: Pipeline, table: str) -> None:
        expected = {"invoices": [("invoice_no", "HASH"), ("line_key", "RANGE")], "customers": [("customer_id", "HASH")]}
        name = f"{self.settings.kv_table_prefix}{table}"
        item = f"table {name}"
        try:
            description = _aws_client("dynamodb", self.settings).describe_table(TableName=name)["Table"]
        except Exception as exc:
            reason, code = _aws_reason(exc)
            if code == "ResourceNotFoundException":
                self.add(p.name, item, "missing", f"the DynamoDB table {name} does not exist",
                         f'create it with {CLOUDFORMATION}, parameter KvTablePrefix="{self.settings.kv_table_prefix}" '
                         "(see deploy/README.md), or set ECOMMERCE_KV_TABLE_PREFIX to the prefix of the existing tables")
            else:
                self.add(p.name, item, "unreachable", f"DynamoDB table {name}: {reason}", _aws_fix(code))
            return
        keys = [(k["AttributeName"], k["KeyType"]) for k in description.get("KeySchema", [])]
        if sorted(keys) != sorted(expected[table]):
            want = ", ".join(f"{k} {t}" for k, t in expected[table])
            self.add(p.name, item, "missing", f"DynamoDB table {name} has the key schema {keys}, not {want}",
                     f"recreate it with {CLOUDFORMATION} (see deploy/README.md)")
            return
        self.add(p.name, item, "ok", f"DynamoDB table {name}: {description.get('TableStatus', '?')}, "
                 + ", ".join(f"{k} {t}" for k, t in keys))


def run_doctor(settings: Settings | None = None) -> DoctorReport:
    """Check the environment and every pipeline; return the report (see the module docstring).

    Raises ``SettingsError`` only when the settings themselves are invalid (the CLI exits 2 on it)."""
    settings = settings or get_settings()
    from ecommerce_assets.resources.dbt import dbt_executable

    exe = dbt_executable()
    dbt = _BackgroundCall(lambda: dbt_version_output(exe))  # the slowest check runs while the others do
    doctor = _Doctor(settings)
    doctor.build_resources()
    doctor.environment()
    for pipeline in PIPELINES:
        try:
            doctor.pipeline(pipeline, dbt)
        except Exception as exc:  # never let one pipeline hide the others
            doctor.add(pipeline.name, "pipeline", "unreachable", f"the check itself failed: {_reason(exc)}")
    secrets = secret_values(settings)
    checks = [Check(c.part, _scrub(c.item, secrets), c.status, _scrub(c.detail, secrets), _scrub(c.fix, secrets))
              for c in doctor.checks]
    parts = [(ENVIRONMENT, f"{settings.env} mode")] + [(p.name, p.title) for p in PIPELINES]
    return DoctorReport(env=settings.env, parts=parts, checks=checks)
