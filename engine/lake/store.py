"""Where a lake lives: a local directory or an object-store prefix (``s3://bucket/prefix``, ...).

One abstraction, so nothing else branches on the kind of storage: :func:`resolve` turns what the
user typed (``--parquet``, ``--dir``, ``--output``, ``DATAPAIR_LAKE``) into a :class:`LakeDir`:
a :mod:`pyarrow.fs` filesystem (remote lakes; a local one is read with :mod:`os`, and pyarrow is
imported only when a file is opened) and a root inside it. A file of a local lake is a
:class:`~pathlib.Path` (exactly as before); a file of a remote lake is its URL as a ``str``
(``s3://bucket/prefix/mbo_2025-10-22.parquet``), and the readers open either through
:func:`parquet_metadata`, :func:`parquet_file` and :func:`scan_parquet`.

Credentials and endpoint come from the usual environment variables, read by Arrow's S3 client
itself (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, and
``AWS_ENDPOINT_URL`` for S3-compatible servers such as MinIO); Polars gets the same values
(:func:`storage_options`). Other ``pyarrow.fs`` URLs (``gs://``, ``hdfs://``, ``file://``) resolve
the same way.

Writes to a remote lake stay atomic: a file is written locally, uploaded under a hidden temporary
key (:func:`engine.tempfiles.temp_path`'s name, which no reader lists) and then published by a
server-side copy to its final key and a delete of the temporary one (:meth:`LakeDir.publish`). An
object store makes a copy visible whole or not at all, so a final ``mbo_*.parquet`` key is never
half written.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError
from engine.tempfiles import temp_path

if TYPE_CHECKING:
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

__all__ = [
    "LakeDir",
    "LakePath",
    "is_remote",
    "parquet_file",
    "parquet_metadata",
    "resolve",
    "scan_parquet",
    "storage_options",
]

LakePath = Path | str
"""A lake file: a local :class:`Path`, or the URL (``str``) of an object in a remote lake."""

_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_REGION")


def is_remote(location: str | os.PathLike[str]) -> bool:
    """True for a URL of a remote filesystem (``s3://...``), False for a local path or ``file://``."""
    if not isinstance(location, str) or "://" not in location:
        return False
    return location.split("://", 1)[0].lower() not in ("", "file")


@functools.lru_cache(maxsize=32)
def _filesystem(scheme: str, netloc: str, env: tuple[str | None, ...]) -> pafs.FileSystem:
    import pyarrow.fs as pafs

    del env  # part of the cache key only: new credentials or endpoint give a new client
    try:
        fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{netloc}")
    except (pafs.ArrowInvalid, OSError, ValueError) as exc:  # type: ignore[attr-defined]
        msg = f"cannot open the lake location {scheme}://{netloc}: {exc}"
        raise ConfigError(msg) from None
    return fs


def _remote_fs(url: str) -> tuple[pafs.FileSystem, str, str]:
    """(filesystem, path inside it, ``scheme://``) of a remote URL."""
    scheme, rest = url.split("://", 1)
    netloc = rest.split("/", 1)[0]
    if not netloc:
        msg = f"the lake location {url!r} names no bucket"
        raise ConfigError(msg)
    fs = _filesystem(scheme.lower(), netloc, tuple(os.environ.get(k) for k in _ENV))
    return fs, rest.rstrip("/"), f"{scheme.lower()}://"


@dataclass(frozen=True)
class LakeDir:
    """A lake's location: ``fs`` and ``root`` (a path inside it); ``local`` for a directory here
    (``fs`` None: :meth:`filesystem` makes a local one when a copy needs it)."""

    uri: str
    fs: pafs.FileSystem | None
    root: str
    local: bool
    prefix: str = ""
    """``s3://`` for a remote lake (prepended to ``root/name`` to make a file's URL)."""

    def path(self, name: str) -> LakePath:
        """The lake file ``name``: a Path (local) or a URL (remote)."""
        if self.local:
            return Path(self.root) / name
        return f"{self.prefix}{self.root}/{name}"

    def key(self, name: str) -> str:
        """``name``'s path inside :attr:`fs`."""
        return f"{self.root}/{name}"

    def filesystem(self) -> pafs.FileSystem:
        """:attr:`fs`, or the local filesystem for a local lake."""
        import pyarrow.fs as pafs

        return self.fs if self.fs is not None else pafs.LocalFileSystem()

    def listing(self) -> list[tuple[str, int, int]]:
        """``(name, size, mtime_ns)`` of every file directly in the lake (a missing lake is empty)."""
        if self.fs is None:
            return _local_listing(self.root)
        import pyarrow.fs as pafs

        sel = pafs.FileSelector(self.root, allow_not_found=True, recursive=False)
        try:
            infos = self.fs.get_file_info(sel)
        except (OSError, ValueError):
            return []
        out = []
        for i in infos:
            if i.type == pafs.FileType.File:
                mtime = i.mtime_ns if i.mtime_ns is not None else 0
                out.append((i.base_name, int(i.size or 0), int(mtime)))
        return out

    def exists(self) -> bool:
        """True if the lake's directory (local) or its bucket (remote) can be listed."""
        if self.local:
            return Path(self.root).is_dir()
        import pyarrow.fs as pafs

        try:
            bucket = self.root.split("/", 1)[0]
            return bool(self.filesystem().get_file_info(bucket).type == pafs.FileType.Directory)
        except OSError:
            return False

    def download(self, name: str, dest: Path) -> bool:
        """Copy lake file ``name`` to local ``dest``; False if it does not exist."""
        import pyarrow.fs as pafs

        fs = self.filesystem()
        if fs.get_file_info(self.key(name)).type != pafs.FileType.File:
            return False
        pafs.copy_files(self.key(name), str(dest), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())  # fmt: skip
        return True

    def publish(self, local_file: Path, name: str) -> LakePath:
        """Upload ``local_file`` as lake file ``name``, atomically (temporary key, copy, delete)."""
        import pyarrow.fs as pafs

        fs = self.filesystem()
        final = self.key(name)
        temp = str(temp_path(final))
        try:
            pafs.copy_files(str(local_file), temp, source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=fs)  # fmt: skip
            fs.copy_file(temp, final)
        finally:
            with contextlib.suppress(OSError):  # never uploaded
                fs.delete_file(temp)
        return self.path(name)


def resolve(location: str | os.PathLike[str]) -> LakeDir:
    """The :class:`LakeDir` of a local path, ``file://`` URL or remote URL (``s3://bucket/prefix``)."""
    text = os.fspath(location)
    if is_remote(text):
        fs, root, prefix = _remote_fs(text)
        return LakeDir(text, fs, root, False, prefix)
    if text.startswith("file://"):
        text = text[len("file://") :]
    return LakeDir(text, None, str(Path(text)), True)


def _local_listing(root: str) -> list[tuple[str, int, int]]:
    try:
        with os.scandir(root) as it:
            entries = [(e.name, e.stat()) for e in it if e.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [(name, st.st_size, st.st_mtime_ns) for name, st in entries]


def _open(path: LakePath) -> tuple[pafs.FileSystem | None, str]:
    if isinstance(path, str) and is_remote(path):
        fs, key, _ = _remote_fs(path)
        return fs, key
    return None, os.fspath(path)


def parquet_metadata(path: LakePath) -> pq.FileMetaData:
    """A lake file's Parquet footer (the only bytes read)."""
    import pyarrow.parquet as pq

    fs, key = _open(path)
    return pq.read_metadata(key, filesystem=fs)


def parquet_file(path: LakePath, **kwargs: Any) -> pq.ParquetFile:
    """A :class:`pyarrow.parquet.ParquetFile` of a local or remote lake file."""
    import pyarrow.parquet as pq

    fs, key = _open(path)
    return pq.ParquetFile(key, filesystem=fs, **kwargs)


def storage_options() -> dict[str, str] | None:
    """Polars' object-store options from the AWS environment variables (None if none is set)."""
    opts = {
        "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID"),
        "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "aws_region": os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"),
        "aws_endpoint_url": os.environ.get("AWS_ENDPOINT_URL"),
    }
    out = {k: v for k, v in opts.items() if v}
    if out.get("aws_endpoint_url", "").startswith("http://"):
        out["aws_allow_http"] = "true"
    return out or None


def scan_parquet(paths: LakePath | Sequence[LakePath]) -> Any:
    """``polars.scan_parquet`` over local or remote lake files (``polars.LazyFrame``)."""
    import polars as pl

    many: list[LakePath] = [paths] if isinstance(paths, str | Path) else list(paths)
    single = isinstance(paths, str | Path)
    if any(isinstance(p, str) and is_remote(p) for p in many):
        urls = [str(p) for p in many]
        return pl.scan_parquet(urls[0] if single else urls, storage_options=storage_options())
    local = [Path(p) for p in many]
    return pl.scan_parquet(local[0] if single else local)
