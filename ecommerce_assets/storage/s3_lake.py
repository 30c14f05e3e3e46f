"""The lake on S3 (aws mode): a bucket and a prefix, through boto3.

Keys are the same relative keys as the local lake (``landing/<source>/...``); they live at
``s3://<bucket>/<prefix>/<key>``. ``AWS_ENDPOINT_URL`` is honoured, so any S3-compatible endpoint works
(MinIO, moto's server in the tests).

DuckDB reads and writes ``s3://`` through the *offline* httpfs extension shipped in the
``duckdb-extension-httpfs`` wheel: nothing is downloaded at run time. The engine gets an S3 secret with
the credentials boto3 resolves (environment, profile, ECS task role, Lambda role), so the transforms run
the same SQL as in local mode.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import duckdb
from botocore.exceptions import ClientError
from pydantic import PrivateAttr

from ecommerce_assets.storage.lake import TMP_PREFIX, Lake, LakeObject, fit_name, temp_name
from ecommerce_assets.storage.warehouses.base import sql_literal

DELETE_BATCH = 1000  # the most keys one DeleteObjects call accepts


@cache
def httpfs_extension_path() -> Path:
    """The ``httpfs.duckdb_extension`` file inside the installed ``duckdb-extension-httpfs`` wheel."""
    import duckdb_extension_httpfs

    root = Path(next(iter(duckdb_extension_httpfs.__path__)))
    exact = root / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    if exact.is_file():
        return exact
    found = sorted(root.rglob("httpfs.duckdb_extension"))
    if not found:
        raise RuntimeError(
            f"the httpfs extension is missing from {root}: install duckdb-extension-httpfs=={duckdb.__version__}"
        )
    return found[-1]


def configure_s3(
    con: duckdb.DuckDBPyConnection,
    *,
    region: str | None,
    endpoint_url: str | None,
    credentials: Any | None = None,
    profile_name: str | None = None,
) -> None:
    """Load the offline httpfs extension into ``con`` and give it an S3 secret.

    ``credentials`` is a botocore frozen credentials object (access_key, secret_key, token); when None,
    boto3's default chain resolves them. ``endpoint_url`` (http://host:port) switches to path-style URLs,
    without SSL for ``http://``.
    """
    con.execute(f"LOAD {sql_literal(str(httpfs_extension_path()))}")
    if credentials is None:
        resolved = boto3.session.Session(profile_name=profile_name).get_credentials()
        credentials = resolved.get_frozen_credentials() if resolved is not None else None
    options = ["TYPE s3"]
    if credentials is not None:
        options.append(f"KEY_ID {sql_literal(credentials.access_key)}")
        options.append(f"SECRET {sql_literal(credentials.secret_key)}")
        if credentials.token:
            options.append(f"SESSION_TOKEN {sql_literal(credentials.token)}")
    if region:
        options.append(f"REGION {sql_literal(region)}")
    if endpoint_url:
        parsed = urlparse(endpoint_url if "://" in endpoint_url else f"http://{endpoint_url}")
        options.append(f"ENDPOINT {sql_literal(parsed.netloc)}")
        options.append("URL_STYLE 'path'")
        options.append(f"USE_SSL {'true' if parsed.scheme == 'https' else 'false'}")
    con.execute(f"CREATE OR REPLACE SECRET ecommerce_s3 ({', '.join(options)})")


def default_region() -> str:
    """The region boto3 would use (``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / profile), else us-east-1."""
    return boto3.session.Session().region_name or "us-east-1"


class S3Lake(Lake):
    """The lake as an S3 bucket + prefix (``s3://<ECOMMERCE_S3_BUCKET>/<ECOMMERCE_S3_PREFIX>/``)."""

    bucket: str
    prefix: str = ""
    region_name: str | None = None
    endpoint_url: str | None = None
    cache_dir: str | None = None  # where open_local downloads objects (default: the system temp dir)

    _client: Any = PrivateAttr(default=None)

    # --- addressing -------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The boto3 S3 client (one per resource instance)."""
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", region_name=self.region_name, endpoint_url=self.endpoint_url)
        return self._client

    def _full(self, key: str) -> str:
        key = key.lstrip("/")
        if ".." in key.split("/"):
            raise ValueError(f"lake key may not contain '..': {key!r}")
        root = self.prefix.strip("/")
        return f"{root}/{key}" if root else key

    def _relative(self, full_key: str) -> str:
        root = self.prefix.strip("/")
        return full_key[len(root) + 1 :] if root else full_key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def key_of(self, uri: str) -> str:
        """The lake key of an ``s3://`` URI of this lake (the inverse of ``uri``)."""
        head = f"s3://{self.bucket}/"
        root = self.prefix.strip("/")
        if not uri.startswith(head) or (root and not uri[len(head) :].startswith(root + "/")):
            raise ValueError(f"{uri!r} is not in this lake ({self.uri('')})")
        return self._relative(uri[len(head) :])

    # --- listing ----------------------------------------------------------------------------
    def list_objects(self, prefix: str, start_after: str | None = None) -> Iterator[LakeObject]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._full(prefix)}
        if start_after:
            kwargs["StartAfter"] = self._full(start_after)
        for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                key = self._relative(obj["Key"])
                if "/" + TMP_PREFIX in "/" + key[len(prefix):]:
                    continue  # below an in-flight write's prefix: not there yet
                yield LakeObject(
                    key=key,
                    size=int(obj["Size"]),
                    version=str(obj.get("ETag", "")).strip('"'),
                    last_modified=obj["LastModified"].timestamp(),
                )

    def list_prefixes(self, prefix: str) -> list[str]:
        stem = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        full = self._full(stem) if stem else (self.prefix.strip("/") + "/" if self.prefix.strip("/") else "")
        found: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
            found.extend(self._relative(p["Prefix"]) for p in page.get("CommonPrefixes", []))
        return sorted(found)

    # --- objects ----------------------------------------------------------------------------
    def read_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"].read()

    def write_bytes(self, key: str, data: bytes) -> str:
        # one PutObject is atomic on S3: readers see the old object or the whole new one, never a part
        self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)
        return self.uri(key)

    @contextmanager
    def writing(self, key: str) -> Iterator[str]:
        if not key.endswith("/"):
            yield self.uri(key)  # one object: S3 shows the old object or the whole new one
            return
        parent, _, _name = key.rstrip("/").rpartition("/")
        staging = f"{parent}/{temp_name()}/" if parent else f"{temp_name()}/"
        try:
            yield self.uri(staging)
            written = {o.key[len(staging):] for o in self.list_objects(staging)}
            for rel in sorted(written):
                self.copy(staging + rel, key + rel)
            stale = [o.key for o in self.list_objects(key) if o.key[len(key):] not in written]
            for start in range(0, len(stale), DELETE_BATCH):
                batch = stale[start : start + DELETE_BATCH]
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": self._full(k)} for k in batch], "Quiet": True}
                )
        finally:
            self.delete_prefix(staging)

    def upload_file(self, path: Path, key: str) -> str:
        """Upload a local file (multipart for large files; the object appears whole when complete)."""
        self.client.upload_file(str(path), self.bucket, self._full(key))
        return self.uri(key)

    def copy(self, src_key: str, dst_key: str) -> str:
        # the managed copy switches to multipart UploadPartCopy above 8 MB (CopyObject stops at 5 GB)
        self.client.copy({"Bucket": self.bucket, "Key": self._full(src_key)}, self.bucket, self._full(dst_key))
        return self.uri(dst_key)

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def stat(self, key: str) -> LakeObject:
        head = self._head(key)
        if head is None:
            raise FileNotFoundError(self.uri(key))
        return LakeObject(
            key=key.lstrip("/"),
            size=int(head["ContentLength"]),
            version=str(head.get("ETag", "")).strip('"'),
            last_modified=head["LastModified"].timestamp(),
        )

    def delete_prefix(self, prefix: str) -> int:
        """Delete the object ``prefix`` itself and everything below ``prefix/`` (like a local folder)."""
        keys: list[str] = []
        if not prefix.endswith("/") and self.exists(prefix):
            keys.append(self._full(prefix))
        folder = prefix if prefix.endswith("/") else prefix + "/"
        keys.extend(self._full(o.key) for o in self.list_objects(folder))
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            result = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            errors = result.get("Errors") or []
            if errors:
                first = errors[0]
                raise RuntimeError(
                    f"S3 refused to delete {len(errors)} object(s) under s3://{self.bucket}/{self._full(prefix)}: "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
        return len(keys)

    def open_local(self, key: str) -> Path:
        """Download the object once into a local cache keyed by its ETag and return the file."""
        head = self._head(key)
        if head is None:
            raise FileNotFoundError(self.uri(key))
        etag = str(head.get("ETag", "")).strip('"') or "none"
        digest = hashlib.sha256(self.uri(key).encode()).hexdigest()[:24]
        root = Path(self.cache_dir) if self.cache_dir else Path(tempfile.gettempdir()) / "ecommerce-lake-cache"
        # an S3 key's name may be longer than a local file name can be: fit_name shortens it
        target = root / digest / etag / fit_name(key.rsplit("/", 1)[-1])
        if target.is_file() and target.stat().st_size == int(head["ContentLength"]):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(temp_name())
        try:
            self.client.download_file(self.bucket, self._full(key), str(tmp))
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    # --- the engine -------------------------------------------------------------------------
    def engine(self) -> duckdb.DuckDBPyConnection:
        con = super().engine()
        spill = Path(self.cache_dir or tempfile.gettempdir()) / "ecommerce-duckdb-tmp"
        spill.mkdir(parents=True, exist_ok=True)
        con.execute("SET temp_directory = ?", [str(spill)])
        configure_s3(con, region=self.region_name or default_region(), endpoint_url=self.endpoint_url)
        return con
