-- ingest_log: one completion record per loaded source file (see sql/README.md).
-- Written in one ILP transaction after count() confirmed the file's rows; never read for
-- anything but the skip-if-complete check of a rerun.
CREATE TABLE IF NOT EXISTS ingest_log (
    ts TIMESTAMP,
    table_name SYMBOL,
    file_key SYMBOL,
    filter_key SYMBOL,
    symbol SYMBOL,
    publisher_id INT,
    row_count LONG,
    ts_event_min LONG,
    ts_event_max LONG,
    ts_recv_min LONG,
    ts_recv_max LONG,
    file_name VARCHAR,
    file_size LONG,
    symbols_filter VARCHAR,
    protocol SYMBOL,
    load_seconds DOUBLE
) TIMESTAMP(ts) PARTITION BY MONTH WAL;
