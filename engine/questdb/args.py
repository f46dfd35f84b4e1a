"""CLI wiring of the QuestDB sink: ``--questdb [URL] --protocol --partition --table`` and the inputs.

``engine.ingest`` adds the flags with :func:`add_questdb_arguments` and turns the parsed
arguments into :class:`~engine.questdb.conf.QuestDBOptions` with :func:`questdb_options_from_args`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import ConfigError
from engine.questdb.conf import ENV_VARS, PARTITIONS, PROTOCOLS, QuestDBOptions

__all__ = ["add_questdb_arguments", "questdb_options_from_args"]


_FROM_ENV = "$QUESTDB_URL"


def add_questdb_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--questdb [URL] --protocol --partition --table`` to an ingest CLI."""
    g = parser.add_argument_group(
        "QuestDB",
        "load into QuestDB (table created when missing, refused when its columns differ); environment: "
        + "; ".join(f"{k}: {v}" for k, v in ENV_VARS.items()),
    )
    g.add_argument(
        "--questdb", nargs="?", const=_FROM_ENV, default=None, metavar="URL",
        help="load into QuestDB at URL (default $QUESTDB_URL or http://localhost:9000); put it after the inputs",
    )  # fmt: skip
    g.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="auto (QWP when offered, else ILP/HTTP), qwp, ilp-http or ilp-tcp (default $QDB_PROTOCOL or auto)")  # fmt: skip
    g.add_argument(
        "--partition", choices=PARTITIONS, default="day", help="partitioning of a new table (default day)"
    )
    g.add_argument("--table", default="mbo_ticks", help="target table (default mbo_ticks)")


def questdb_options_from_args(
    args: argparse.Namespace, environ: dict[str, str] | None = None
) -> QuestDBOptions | None:
    """The :class:`QuestDBOptions` of parsed arguments, or None without ``--questdb``.

    Uses ``args.jobs`` and ``args.force`` when the CLI has them. Raises :class:`ConfigError`
    for bad values (naming the flag or variable).
    """
    value = getattr(args, "questdb", None)
    if value is None:
        return None
    url = None if value == _FROM_ENV else value
    if url is not None and (url.endswith((".dbn", ".dbn.zst")) or Path(url).exists()):
        msg = f"--questdb {url!r} looks like an input file: put --questdb after the inputs, or give the server URL"
        raise ConfigError(msg)
    return QuestDBOptions.from_env(
        environ, url=url, protocol=getattr(args, "protocol", None), partition=getattr(args, "partition", None),
        table=getattr(args, "table", None), force=getattr(args, "force", None), concurrency=getattr(args, "jobs", None),
    )  # fmt: skip
