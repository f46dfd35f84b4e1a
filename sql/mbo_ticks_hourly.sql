-- mbo_ticks, partitioned by HOUR (the production variant, `--partition hour`).
-- Same columns and dedup keys as mbo_ticks.sql; only the partitioning differs.
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
) TIMESTAMP(ts_event) PARTITION BY HOUR WAL
DEDUP UPSERT KEYS(ts_event, ts_recv, instrument_id, publisher_id, day_seq);
