"""Issue 16: the lake on object storage, against moto's S3-compatible server started here.

Ingest into ``s3://bucket/prefix`` and query it back: the same files, rows and answers as a local
lake; a rerun skips from footers; a day's second (symbol-split) file merges into the remote day
file; an upload that dies halfway leaves no final key (and no temporary one).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from engine.book.derive import derive_day
from engine.book.index import index_lake
from engine.book.snapshot import book_snapshot
from engine.errors import QueryError
from engine.lake.ingest import ingest_parquet
from engine.lake.layout import list_lake, read_lake_info
from engine.lake.query import run_query
from engine.lake.scan import scan_lake
from engine.lake.store import resolve
from engine.synth.day import write_day
from engine.timeparse import parse_datetime
from service.stores.lake import LakeStore
from tests.support.samples import ROOT

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

BUCKET = "datapair-test"


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    """A moto S3 server on a free port, and the AWS_* variables that point at it (set for the module)."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        try:
            yield env
        finally:
            server.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("dbn")
    out = []
    for i, day in enumerate(("2025-10-21", "2025-10-22")):
        p = d / f"XNAS.ITCH-{day}.dbn.zst"
        write_day(p, records=4_000, date=day, seed=i + 1)
        out.append(p)
    more = d / "XNAS.ITCH-2025-10-22-more.dbn.zst"  # a second file of the same day, other symbols
    write_day(more, records=2_000, symbols=["AMD", "INTC"], date="2025-10-22", seed=9)
    return [*out, more]


def keys(prefix: str) -> list[str]:
    got = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")
    names = (o["Key"].removeprefix(prefix + "/") for o in got.get("Contents", []))
    return sorted(n for n in names if n)  # pyarrow may leave a directory marker (the prefix itself)


def test_ingest_and_query_round_trip_exactly(
    s3_env: dict[str, str], files: list[Path], tmp_path: Path
) -> None:
    url = f"s3://{BUCKET}/lake1"
    local = tmp_path / "local"
    want = ingest_parquet(files, local)
    got = ingest_parquet(files[:2], url)  # the second file of 10-22 comes later: merged remotely
    assert got.ok, got.failed
    got2 = ingest_parquet(files, url)
    assert got2.ok and got2.skipped == 2 and got2.files == 3
    assert keys("lake1") == ["mbo_2025-10-21.parquet", "mbo_2025-10-22.parquet"]  # no temporary key left
    assert got.rows + got2.rows == want.rows
    names = [Path(f.path).name for f in list_lake(url)]
    assert names == [Path(f.path).name for f in list_lake(local)]
    for f in list_lake(url):
        info = read_lake_info(f.path)
        assert isinstance(f.path, str) and f.path.startswith("s3://")
        assert info.complete and info.rows == read_lake_info(local / Path(f.path).name).rows
    # queries read the remote lake exactly as the local one
    for symbol in ("NVDA", "AMD"):
        a = scan_lake(url, symbol=symbol).collect()
        b = scan_lake(local, symbol=symbol).collect()
        assert a.height > 0 and a.equals(b, null_equal=True)
    sql = "SELECT symbol, count(*) AS n, sum(price_raw) AS p FROM df GROUP BY symbol ORDER BY symbol"
    assert run_query(url, sql=sql).equals(run_query(local, sql=sql))
    day = scan_lake(url, start=dt.date(2025, 10, 22), end=dt.date(2025, 10, 23)).collect()
    assert day.height == 6_000
    # the command line and the service take the URL too
    out = subprocess.run(
        [sys.executable, "-m", "engine.query", "--dir", url, "--symbol", "AMD", "--sql", "SELECT count(*) AS n FROM df"],
        capture_output=True, text=True, env={**s3_env, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert str(scan_lake(local, symbol="AMD").collect().height) in out.stdout
    remote, here = LakeStore(url), LakeStore(local)
    assert remote.symbols() == here.symbols()
    assert remote.ping()["rows"] == here.ping()["rows"] == want.rows
    # and the order book reads the remote lake as the local one (no checkpoints there: a full replay)
    for symbol, at in (
        ("NVDA", "2025-10-22 15:00"),
        ("AMD", "2025-10-22 18:30"),
        ("NVDA", "2025-10-21 20:00"),
    ):
        ns = parse_datetime(at)
        book = book_snapshot(url, symbol, ns, depth=5, orders=True)
        assert book["bids"] and book == book_snapshot(local, symbol, ns, depth=5, orders=True)
        assert remote.book(symbol, ns) == here.book(symbol, ns)
    mbp = derive_day(url, "mbp-1", dt.date(2025, 10, 22), tmp_path / "mbp-remote", symbols=["AMD"])
    mbp_local = derive_day(local, "mbp-1", dt.date(2025, 10, 22), tmp_path / "mbp-local", symbols=["AMD"])
    assert mbp.rows_out > 0
    pd.testing.assert_frame_equal(pd.read_parquet(mbp.path), pd.read_parquet(mbp_local.path))  # NaN = empty level
    with pytest.raises(QueryError, match="beside a local lake"):
        index_lake(url)


def test_an_upload_cut_short_leaves_no_final_key(
    s3_env: dict[str, str], files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{BUCKET}/lake2"
    real = pafs.copy_files

    def dies_halfway(source: str, destination: str, **kw: object) -> None:
        if destination.endswith(".tmp"):  # the upload under the temporary key: half the bytes, then the crash
            fs = kw["destination_filesystem"]
            with fs.open_output_stream(destination) as out:  # type: ignore[attr-defined]
                out.write(Path(source).read_bytes()[:1000])
            raise OSError("connection reset during upload")
        real(source, destination, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pafs, "copy_files", dies_halfway)
    s = ingest_parquet(files[:1], url)
    assert not s.ok and "connection reset" in s.failed[0][1]
    assert keys("lake2") == []  # neither a half-written final key nor the temporary one
    monkeypatch.setattr(pafs, "copy_files", real)
    again = ingest_parquet(files[:1], url)
    assert again.ok and keys("lake2") == ["mbo_2025-10-21.parquet"]
    md = pq.read_metadata(f"{BUCKET}/lake2/mbo_2025-10-21.parquet", filesystem=resolve(url).fs)
    assert md.num_rows == again.rows == 4_000


@pytest.mark.questdb
def test_export_into_an_object_store_lake(
    s3_env: dict[str, str], files: list[Path], questdb_url: str, questdb_tables, tmp_path: Path
) -> None:
    from engine.questdb.export import export_days
    from engine.questdb.ingest import ingest_questdb
    from tests.support.qdb import options

    names = questdb_tables("t_s3exp"), questdb_tables("t_s3exp_log")
    loaded = ingest_questdb(files[:1], options=options(questdb_url, names))
    assert loaded.ok, loaded.failed
    url = f"s3://{BUCKET}/lake3"
    s = export_days([dt.date(2025, 10, 21)], url, url=questdb_url, table=names[0])
    assert s.rows == 4_000
    assert keys("lake3") == ["mbo_2025-10-21.parquet"]
    local = tmp_path / "local"
    ingest_parquet(files[:1], local)
    assert (
        scan_lake(url)
        .collect()
        .sort("ts_recv", "order_id")
        .equals(scan_lake(local).collect().sort("ts_recv", "order_id"), null_equal=True)
    )
