"""Where the QuestDB server is and how to load it: URL / conf-string parsing, env vars, options.

``QUESTDB_URL`` (default ``http://localhost:9000``) names the server's HTTP endpoint, in any of the
forms users already have at hand:

- ``http://host:9000``, ``https://user:secret@host:9000``, ``host:9000``, ``host``;
- a client conf string (``http::addr=host:9000;username=admin;password=quest;``), the format of
  ``QDB_CLIENT_CONF``; ``https::``, ``ws::`` and ``wss::`` name the same HTTP port, ``tcp::`` and
  ``tcps::`` name the ILP/TCP port (the HTTP port then defaults to 9000 on the same host).

From one :class:`ServerAddress` come the conf strings of the three protocols (QWP/WebSocket and
ILP/HTTP on the HTTP port, ILP/TCP on ``QDB_ILP_TCP_PORT``, default 9009) and the base URL of
``/exec``. :class:`QuestDBOptions` gathers everything a load needs (picklable: it travels to
worker processes); every field has an environment variable, see :data:`ENV_VARS`.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from engine.errors import ConfigError

__all__ = [
    "DEFAULT_URL",
    "ENV_VARS",
    "PARTITIONS",
    "PROTOCOLS",
    "QuestDBOptions",
    "ServerAddress",
    "check_identifier",
    "conf_value",
    "parse_positive_int",
    "parse_questdb_url",
]

DEFAULT_URL = "http://localhost:9000"
DEFAULT_HTTP_PORT = 9000
DEFAULT_TCP_PORT = 9009
PROTOCOLS = ("auto", "qwp", "ilp-http", "ilp-tcp")
"""``--protocol`` values: auto picks QWP when the server offers it, else ILP/HTTP."""
PARTITIONS = ("day", "hour")

ENV_VARS: dict[str, str] = {
    "QUESTDB_URL": f"server HTTP endpoint: URL, host[:port] or client conf string (default {DEFAULT_URL})",
    "QDB_PROTOCOL": "default of --protocol: auto, qwp, ilp-http or ilp-tcp (default auto)",
    "QDB_FLUSH_ROWS": "rows per ILP request (default 50000; QWP batches are sized by the client)",
    "QDB_BATCH_BYTES": "bytes per ILP request, at most (default 16000000)",
    "QDB_ILP_CONNECTIONS": "ILP/HTTP requests in flight at once per file, one connection each (default 2)",
    "QDB_QWP_ROWS": "rows per QWP bulk-load call, each one committed (default 500000)",
    "QDB_CONCURRENCY": "files loaded at once, each with its own sender (default 2; --jobs wins)",
    "QDB_RETRY_TIMEOUT": "milliseconds to keep retrying transient errors and dropped connections (default 10000)",
    "QDB_VERIFY_TIMEOUT": "seconds to wait for WAL apply and count() to show every row (default 300)",
    "QDB_ILP_TCP_PORT": f"ILP/TCP port (default {DEFAULT_TCP_PORT})",
    "QDB_LOG_TABLE": "table of per-file completion records (default ingest_log)",
}
"""Every environment variable the QuestDB sink reads, with its meaning and default."""

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,126}\Z")
_HOST = re.compile(r"[A-Za-z0-9._-]+\Z|\[[0-9A-Fa-f:.]+\]\Z")
_CONF_SCHEMES = ("http", "https", "tcp", "tcps", "ws", "wss")


def check_identifier(name: str, what: str = "table name") -> str:
    """``name`` if it is a plain SQL identifier (letters, digits, ``_``), else :class:`ConfigError`.

    Table names are the only names the engine puts into SQL text, so they are held to this.
    """
    if not isinstance(name, str) or not _IDENT.match(name):
        msg = f"{what} {name!r}: expected letters, digits and '_' (not starting with a digit), at most 127"
        raise ConfigError(msg)
    return name


def conf_value(value: object) -> str:
    """A value escaped for a client conf string (``;`` doubles)."""
    if isinstance(value, bool):
        value = "on" if value else "off"
    return str(value).replace(";", ";;")


def parse_positive_int(text: str | int, name: str) -> int:
    """``"50_000"`` -> 50000; anything but a positive integer is a :class:`ConfigError` naming ``name``."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        s = str(text).strip()
        if not re.fullmatch(r"[0-9][0-9_]*", s):
            msg = f"{name}={text!r}: expected a positive integer"
            raise ConfigError(msg)
        value = int(s)
    if value < 1:
        msg = f"{name}={text!r}: expected a positive integer"
        raise ConfigError(msg)
    return value


def _parse_conf_string(text: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = text.partition("::")
    scheme = scheme.strip().lower()
    if scheme not in _CONF_SCHEMES:
        msg = f"QUESTDB_URL {text!r}: unknown conf-string scheme {scheme!r}, expected one of {', '.join(_CONF_SCHEMES)}"
        raise ConfigError(msg)
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        eq = rest.find("=", i)
        if eq < 0:
            if rest[i:].strip():
                msg = f"QUESTDB_URL {text!r}: expected key=value; pairs, found {rest[i:]!r}"
                raise ConfigError(msg)
            break
        key = rest[i:eq].strip()
        j = eq + 1
        value = []
        while j < n:
            if rest[j] == ";":
                if j + 1 < n and rest[j + 1] == ";":
                    value.append(";")
                    j += 2
                    continue
                break
            value.append(rest[j])
            j += 1
        if not key:
            msg = f"QUESTDB_URL {text!r}: empty key in conf string"
            raise ConfigError(msg)
        params[key] = "".join(value)
        i = j + 1
    if "addr" not in params:
        msg = f"QUESTDB_URL {text!r}: the conf string has no addr=HOST:PORT"
        raise ConfigError(msg)
    return scheme, params


def _split_host_port(addr: str, default_port: int, source: str) -> tuple[str, int]:
    addr = addr.strip()
    if addr.startswith("["):
        host, _, tail = addr.partition("]")
        host += "]"
        port_text = tail[1:] if tail.startswith(":") else ""
    elif addr.count(":") == 1:
        host, _, port_text = addr.partition(":")
    else:
        host, port_text = addr, ""
    if not host or not _HOST.match(host):
        msg = f"QUESTDB_URL {source!r}: bad host {host!r}"
        raise ConfigError(msg)
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        msg = f"QUESTDB_URL {source!r}: bad port {port_text!r}, expected 1-65535"
        raise ConfigError(msg)
    return host, int(port_text)


@dataclass(frozen=True)
class ServerAddress:
    """One QuestDB server: host, HTTP port, TLS and credentials, and its ILP/TCP port."""

    host: str = "localhost"
    port: int = DEFAULT_HTTP_PORT
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    tcp_port: int = DEFAULT_TCP_PORT
    extra: tuple[tuple[str, str], ...] = ()
    """Other conf-string keys (``tls_verify``, ``tls_roots`` ...) passed through to the client."""

    @property
    def http_url(self) -> str:
        """Base URL of the REST API (``/exec``)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def describe(self) -> str:
        """The address for messages, without secrets."""
        who = f"{self.username}@" if self.username else ""
        return f"{'https' if self.tls else 'http'}://{who}{self.host}:{self.port}"

    def auth_header(self) -> str | None:
        """The ``Authorization`` header of REST calls, if credentials are set."""
        if self.token:
            return f"Bearer {self.token}"
        if self.username is not None:
            raw = f"{self.username}:{self.password or ''}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        return None

    def _conf(self, scheme: str, port: int, params: Mapping[str, object]) -> str:
        items: list[tuple[str, object]] = [("addr", f"{self.host}:{port}")]
        if self.username is not None:
            items.append(("username", self.username))
        if self.password is not None:
            items.append(("password", self.password))
        if self.token is not None:
            items.append(("token", self.token))
        items.extend(self.extra)
        items.extend(params.items())
        return f"{scheme}::" + "".join(f"{k}={conf_value(v)};" for k, v in items)

    def ilp_http_conf(self, **params: object) -> str:
        """Conf string of an ILP/HTTP ``questdb.Sender``."""
        return self._conf("https" if self.tls else "http", self.port, params)

    def ilp_tcp_conf(self, **params: object) -> str:
        """Conf string of an ILP/TCP ``questdb.Sender`` (``tcps`` with TLS)."""
        return self._conf("tcps" if self.tls else "tcp", self.tcp_port, params)

    def qwp_conf(self, **params: object) -> str:
        """Conf string of ``questdb.connect`` (QWP over WebSocket, on the HTTP port)."""
        return self._conf("wss" if self.tls else "ws", self.port, params)


def parse_questdb_url(text: str | None, *, tcp_port: int = DEFAULT_TCP_PORT) -> ServerAddress:
    """Parse ``QUESTDB_URL`` (URL, ``host[:port]`` or client conf string) into a :class:`ServerAddress`.

    Raises :class:`ConfigError` naming the value and what was expected.
    """
    if text is None or not str(text).strip():
        text = DEFAULT_URL
    text = str(text).strip()
    if re.match(r"[A-Za-z]+::", text):
        scheme, params = _parse_conf_string(text)
        tls = scheme in ("https", "tcps", "wss")
        known = {"addr", "username", "password", "token"}
        extra = tuple((k, v) for k, v in params.items() if k not in known)
        if scheme in ("tcp", "tcps"):
            host, tport = _split_host_port(params["addr"], tcp_port, text)
            return ServerAddress(host, DEFAULT_HTTP_PORT, tls, params.get("username"), params.get("password"),
                                 params.get("token"), tport, extra)  # fmt: skip
        host, port = _split_host_port(params["addr"], DEFAULT_HTTP_PORT, text)
        return ServerAddress(host, port, tls, params.get("username"), params.get("password"), params.get("token"),
                             tcp_port, extra)  # fmt: skip
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https"):
            msg = f"QUESTDB_URL {text!r}: expected an http:// or https:// URL, found scheme {parts.scheme!r}"
            raise ConfigError(msg)
        if parts.path not in ("", "/") or parts.query:
            msg = f"QUESTDB_URL {text!r}: expected the server's base URL, without a path or query"
            raise ConfigError(msg)
        netloc = parts.netloc.rpartition("@")[2]
        host, port = _split_host_port(
            netloc, 443 if parts.scheme == "https" and ":" not in netloc else DEFAULT_HTTP_PORT, text
        )
        user = unquote(parts.username) if parts.username is not None else None
        pwd = unquote(parts.password) if parts.password is not None else None
        return ServerAddress(host, port, parts.scheme == "https", user, pwd, None, tcp_port)
    host, port = _split_host_port(text, DEFAULT_HTTP_PORT, text)
    return ServerAddress(host, port, False, None, None, None, tcp_port)


@dataclass(frozen=True)
class QuestDBOptions:
    """Everything a QuestDB load needs; picklable, so worker processes get a copy.

    Build it with :meth:`from_env` (environment variables, then explicit overrides), which
    validates every value. See :data:`ENV_VARS` for the variables and their defaults.
    """

    url: str = DEFAULT_URL
    protocol: str = "auto"
    partition: str = "day"
    table: str = "mbo_ticks"
    log_table: str = "ingest_log"
    flush_rows: int = 50_000
    batch_bytes: int = 16_000_000
    ilp_connections: int = 2
    qwp_rows: int = 500_000
    concurrency: int | None = None
    retry_timeout_ms: int = 10_000
    verify_timeout_s: float = 300.0
    tcp_port: int = DEFAULT_TCP_PORT
    force: bool = False

    _ENV = {
        "url": "QUESTDB_URL", "protocol": "QDB_PROTOCOL", "flush_rows": "QDB_FLUSH_ROWS",
        "batch_bytes": "QDB_BATCH_BYTES", "ilp_connections": "QDB_ILP_CONNECTIONS", "qwp_rows": "QDB_QWP_ROWS",
        "concurrency": "QDB_CONCURRENCY",
        "retry_timeout_ms": "QDB_RETRY_TIMEOUT", "verify_timeout_s": "QDB_VERIFY_TIMEOUT",
        "tcp_port": "QDB_ILP_TCP_PORT", "log_table": "QDB_LOG_TABLE",
    }  # fmt: skip

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> QuestDBOptions:
        """Options from ``environ`` (default ``os.environ``); ``overrides`` that are not None win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, var in cls._ENV.items():
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                values[name] = raw.strip()
        for k, v in overrides.items():
            if k not in {f.name for f in fields(cls)}:
                msg = f"unknown QuestDB option {k!r}"
                raise TypeError(msg)
            if v is not None:
                values[k] = v
        return cls._checked(values)

    @classmethod
    def _checked(cls, values: dict[str, Any]) -> QuestDBOptions:
        out: dict[str, Any] = {}
        env = cls._ENV
        ints = ("flush_rows", "batch_bytes", "ilp_connections", "qwp_rows", "retry_timeout_ms", "tcp_port",
                "concurrency")  # fmt: skip
        for name in ints:
            if name in values:
                out[name] = parse_positive_int(values[name], env.get(name, name))
        if "tcp_port" in out and out["tcp_port"] > 65535:
            msg = f"QDB_ILP_TCP_PORT={out['tcp_port']}: expected a port, 1-65535"
            raise ConfigError(msg)
        if "verify_timeout_s" in values:
            try:
                out["verify_timeout_s"] = float(values["verify_timeout_s"])
            except (TypeError, ValueError):
                out["verify_timeout_s"] = -1.0
            if not out["verify_timeout_s"] > 0:
                msg = f"QDB_VERIFY_TIMEOUT={values['verify_timeout_s']!r}: expected a positive number of seconds"
                raise ConfigError(msg)
        protocol = str(values.get("protocol", "auto")).strip().lower()
        if protocol not in PROTOCOLS:
            msg = f"protocol {protocol!r} (--protocol / QDB_PROTOCOL): expected one of {', '.join(PROTOCOLS)}"
            raise ConfigError(msg)
        out["protocol"] = protocol
        partition = str(values.get("partition", "day")).strip().lower()
        if partition not in PARTITIONS:
            msg = f"partition {partition!r} (--partition): expected day or hour"
            raise ConfigError(msg)
        out["partition"] = partition
        out["table"] = check_identifier(values.get("table", cls.table), "table name")
        out["log_table"] = check_identifier(values.get("log_table", cls.log_table), "log table name")
        if out["table"].lower() == out["log_table"].lower():
            msg = f"table name and log table name are both {out['table']!r}"
            raise ConfigError(msg)
        url = str(values.get("url", DEFAULT_URL))
        out["url"] = url
        out["force"] = bool(values.get("force", False))
        opts = cls(**out)
        opts.address  # noqa: B018 - validates the URL now, not in a worker
        return opts

    @property
    def address(self) -> ServerAddress:
        """The parsed server address (raises :class:`ConfigError` for a bad URL)."""
        return parse_questdb_url(self.url, tcp_port=self.tcp_port)

    def with_protocol(self, protocol: str) -> QuestDBOptions:
        """A copy with ``protocol`` (e.g. once ``auto`` has been resolved)."""
        return replace(self, protocol=protocol)
