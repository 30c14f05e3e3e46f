"""pyiceberg's Arrow FileIO with delayed S3 opens (kept apart from ``storage.iceberg``, which imports no pyarrow).

The catalog property ``py-io-impl`` names ``DelayedOpenPyArrowFileIO`` by its dotted path; pyiceberg imports this
module only when a Glue catalog opens a file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyiceberg.io.pyarrow import PyArrowFileIO

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem


class DelayedOpenPyArrowFileIO(PyArrowFileIO):
    """pyiceberg's Arrow FileIO, with S3 streams opened lazily (``allow_delayed_open``).

    A file smaller than one part then goes out as a single PutObject instead of a multipart upload. Real S3 takes
    either; moto's CompleteMultipartUpload reply is refused by Arrow 22, so this is what makes the tests' moto
    server work.
    """

    def _initialize_s3_fs(self, netloc: str | None) -> FileSystem:
        rebuild, (options,) = super()._initialize_s3_fs(netloc).__reduce__()
        return rebuild({**options, "allow_delayed_open": True})
