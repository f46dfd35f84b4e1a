-- mbo_ticks, partitioned by DAY (the default of `--partition day`).
-- Columns: ../shared/DESIGN.md section 3, plus day_seq (see sql/README.md).
-- Nanosecond timestamps (TIMESTAMP_NS, QuestDB >= 9.1); WAL; dedup keys make re-ingest exact.
CREATE TABLE IF NOT EXISTS mbo_ticks (
    ts_event TIMESTAMP_NS,
    symbol SYMBOL CAPACITY 16384,
    instrument_id INT,
    publisher_id SHORT,
    order_id LONG,
    price_raw LONG,
    price DOUBLE,
    size INT,
    flags INT,
    channel_id SHORT,
    action SYMBOL,
    side SYMBOL,
    ts_recv TIMESTAMP_NS,
    ts_in_delta INT,
    sequence LONG,
    day_seq LONG
) TIMESTAMP(ts_event) PARTITION BY DAY WAL
DEDUP UPSERT KEYS(ts_event, ts_recv, instrument_id, publisher_id, day_seq);
