-- The transparency log's state (SQLite). Every table is append-mostly; see spec/log.md.

CREATE TABLE log_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- Every accepted submission. `idx` is NULL while pending and set once, when the sequencer
-- integrates the entry; `leaf_hash` is unique, which is how identical entries deduplicate.
CREATE TABLE entries (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    leaf_hash     BLOB NOT NULL UNIQUE,
    data          BLOB NOT NULL,
    publisher     TEXT NOT NULL,
    submitted_ms  INTEGER NOT NULL,
    idx           INTEGER UNIQUE,
    integrated_ms INTEGER
);
CREATE INDEX entries_pending ON entries (seq) WHERE idx IS NULL;

-- C2SP hash tiles (height 8): the rightmost tile of each level grows until it is full.
CREATE TABLE tiles (
    level      INTEGER NOT NULL,
    tile_index INTEGER NOT NULL,
    hashes     BLOB NOT NULL,
    PRIMARY KEY (level, tile_index)
);

-- One signed checkpoint per tree size, never two.
CREATE TABLE checkpoints (
    size       INTEGER PRIMARY KEY NOT NULL,
    root       BLOB NOT NULL,
    note       TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);

-- Sequencer election: the holder whose lease has not expired may integrate.
CREATE TABLE sequencer_lease (
    id         INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    holder     TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
