"""QUESTDB_URL / conf-string / env parsing and the CLI flags of the QuestDB sink."""

from __future__ import annotations

import argparse
import pickle

import pytest

from engine.errors import ConfigError
from engine.questdb.args import add_questdb_arguments, questdb_options_from_args
from engine.questdb.conf import QuestDBOptions, check_identifier, parse_positive_int, parse_questdb_url


@pytest.mark.parametrize(
    ("text", "host", "port", "tls", "user"),
    [
        (None, "localhost", 9000, False, None),
        ("", "localhost", 9000, False, None),
        ("http://localhost:9000", "localhost", 9000, False, None),
        ("http://db.example:9100/", "db.example", 9100, False, None),
        ("https://admin:p%3Bw@db:9443", "db", 9443, True, "admin"),
        ("https://db", "db", 443, True, None),
        ("qdb-host", "qdb-host", 9000, False, None),
        ("10.1.2.3:9001", "10.1.2.3", 9001, False, None),
        ("[::1]:9000", "[::1]", 9000, False, None),
        ("http::addr=qdb:9000;", "qdb", 9000, False, None),
        (
            "https::addr=qdb:443;username=admin;password=quest;tls_verify=unsafe_off;",
            "qdb",
            443,
            True,
            "admin",
        ),
        ("ws::addr=qdb:9010;", "qdb", 9010, False, None),
    ],
)
def test_url_forms(text: str | None, host: str, port: int, tls: bool, user: str | None) -> None:
    a = parse_questdb_url(text)
    assert (a.host, a.port, a.tls, a.username) == (host, port, tls, user)
    assert a.http_url == f"{'https' if tls else 'http'}://{host}:{port}"


def test_credentials_reach_every_conf_string_escaped() -> None:
    a = parse_questdb_url("https://admin:p%3Bw@db:9443")
    assert a.password == "p;w"
    for conf in (a.ilp_http_conf(protocol_version=2), a.ilp_tcp_conf(), a.qwp_conf()):
        assert "username=admin;" in conf and "password=p;;w;" in conf
    assert a.ilp_http_conf(protocol_version=2).startswith("https::addr=db:9443;")
    assert a.qwp_conf().startswith("wss::addr=db:9443;")
    assert a.ilp_tcp_conf().startswith("tcps::addr=db:9009;")
    assert a.auth_header() == "Basic YWRtaW46cDt3"
    assert "p;w" not in repr(a) and "p;w" not in a.describe()


def test_conf_string_passthrough_and_tcp_form() -> None:
    a = parse_questdb_url("http::addr=qdb:9000;tls_roots=/etc/ca.pem;token=abc;")
    assert dict(a.extra) == {"tls_roots": "/etc/ca.pem"}
    assert a.auth_header() == "Bearer abc"
    assert "tls_roots=/etc/ca.pem;" in a.ilp_http_conf()
    t = parse_questdb_url("tcp::addr=qdb:9019;")
    assert (t.host, t.port, t.tcp_port) == ("qdb", 9000, 9019)
    assert parse_questdb_url("qdb", tcp_port=9100).ilp_tcp_conf() == "tcp::addr=qdb:9100;"
    assert parse_questdb_url("http::addr=q:1;password=a;;b;").password == "a;b"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ftp://db:21", "scheme 'ftp'"),
        ("http://db:9000/exec?query=1", "without a path"),
        ("db:99999", "bad port"),
        ("db:port", "bad port"),
        ("bad host!:9000", "bad host"),
        ("udp::addr=db:9000;", "unknown conf-string scheme"),
        ("http::username=x;", "no addr"),
    ],
)
def test_bad_urls_name_the_value(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match="QUESTDB_URL") as info:
        parse_questdb_url(text)
    assert fragment in str(info.value)


def test_options_from_env_and_overrides() -> None:
    env = {"QUESTDB_URL": "qdb:9100", "QDB_FLUSH_ROWS": "10_000", "QDB_BATCH_BYTES": "1000000",
           "QDB_CONCURRENCY": "3", "QDB_PROTOCOL": "ILP-TCP", "QDB_VERIFY_TIMEOUT": "2.5", "QDB_ILP_TCP_PORT": "9019",
           "QDB_LOG_TABLE": "my_log"}  # fmt: skip
    o = QuestDBOptions.from_env(env)
    assert (o.flush_rows, o.batch_bytes, o.concurrency, o.protocol, o.verify_timeout_s) == (
        10_000,
        1_000_000,
        3,
        "ilp-tcp",
        2.5,
    )
    assert o.address.port == 9100 and o.address.tcp_port == 9019 and o.log_table == "my_log"
    o2 = QuestDBOptions.from_env(
        env, url="other:1", protocol="qwp", flush_rows=7, table="t2", partition="HOUR"
    )
    assert (o2.url, o2.protocol, o2.flush_rows, o2.table, o2.partition) == ("other:1", "qwp", 7, "t2", "hour")
    assert QuestDBOptions.from_env({}) == QuestDBOptions()
    assert pickle.loads(pickle.dumps(o2)) == o2


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"QDB_FLUSH_ROWS": "abc"}, "QDB_FLUSH_ROWS"),
        ({"QDB_FLUSH_ROWS": "0"}, "QDB_FLUSH_ROWS"),
        ({"QDB_BATCH_BYTES": "-5"}, "QDB_BATCH_BYTES"),
        ({"QDB_CONCURRENCY": "1.5"}, "QDB_CONCURRENCY"),
        ({"QDB_VERIFY_TIMEOUT": "soon"}, "QDB_VERIFY_TIMEOUT"),
        ({"QDB_PROTOCOL": "udp"}, "QDB_PROTOCOL"),
        ({"QDB_ILP_TCP_PORT": "70000"}, "QDB_ILP_TCP_PORT"),
        ({"QUESTDB_URL": "ftp://x"}, "QUESTDB_URL"),
        ({"QDB_LOG_TABLE": "drop table x"}, "log table name"),
    ],
)
def test_bad_env_values_are_named(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        QuestDBOptions.from_env(env)


def test_identifiers_and_ints() -> None:
    assert check_identifier("mbo_ticks_2") == "mbo_ticks_2"
    for bad in ("", "1abc", "a-b", "t; DROP TABLE x", "x'y", "a" * 128):
        with pytest.raises(ConfigError):
            check_identifier(bad)
    assert parse_positive_int("1_000", "X") == 1000
    with pytest.raises(ConfigError, match="X='1e3'"):
        parse_positive_int("1e3", "X")
    with pytest.raises(ConfigError, match="same"):
        QuestDBOptions.from_env({}, table="same", log_table="same")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("paths", nargs="*")
    p.add_argument("--jobs", type=int)
    p.add_argument("--force", action="store_true")
    add_questdb_arguments(p)
    return p


def test_cli_flags() -> None:
    p = _parser()
    assert questdb_options_from_args(p.parse_args(["a.dbn.zst"])) is None
    o = questdb_options_from_args(p.parse_args(["a.dbn.zst", "--questdb"]), {"QUESTDB_URL": "envhost:9001"})
    assert o is not None and o.address.host == "envhost" and o.protocol == "auto" and o.partition == "day"
    o = questdb_options_from_args(
        p.parse_args(
            [
                "a",
                "--questdb",
                "http://h:9",
                "--protocol",
                "ilp-http",
                "--partition",
                "hour",
                "--jobs",
                "3",
                "--force",
                "--table",
                "t9",
            ]
        ),
        {"QDB_PROTOCOL": "qwp"},
    )
    assert o is not None
    assert (o.url, o.protocol, o.partition, o.concurrency, o.force, o.table) == (
        "http://h:9",
        "ilp-http",
        "hour",
        3,
        True,
        "t9",
    )
    o = questdb_options_from_args(p.parse_args(["a", "--questdb"]), {"QDB_PROTOCOL": "qwp"})
    assert o is not None and o.protocol == "qwp"
    with pytest.raises(ConfigError, match="looks like an input file"):
        questdb_options_from_args(p.parse_args(["--questdb", "day.dbn.zst"]), {})
    with pytest.raises(SystemExit):
        p.parse_args(["--protocol", "udp"])
