-- The transparency log's state (PostgreSQL). Same shape as the SQLite schema; see spec/log.md.

CREATE TABLE log_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE entries (
    seq           BIGSERIAL PRIMARY KEY,
    leaf_hash     BYTEA NOT NULL UNIQUE,
    data          BYTEA NOT NULL,
    publisher     TEXT NOT NULL,
    submitted_ms  BIGINT NOT NULL,
    idx           BIGINT UNIQUE,
    integrated_ms BIGINT
);
CREATE INDEX entries_pending ON entries (seq) WHERE idx IS NULL;

CREATE TABLE tiles (
    level      BIGINT NOT NULL,
    tile_index BIGINT NOT NULL,
    hashes     BYTEA NOT NULL,
    PRIMARY KEY (level, tile_index)
);

CREATE TABLE checkpoints (
    size       BIGINT PRIMARY KEY NOT NULL,
    root       BYTEA NOT NULL,
    note       TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE sequencer_lease (
    id         BIGINT PRIMARY KEY NOT NULL CHECK (id = 1),
    holder     TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
