-- The secret the service's challenges are authenticated with (one row, `challenge`), shared by
-- every replica of the service on this database; the first one stored stays.
CREATE TABLE service_secrets (
    name TEXT PRIMARY KEY NOT NULL,
    secret TEXT NOT NULL
);

-- Every release of a model key, recorded before the key leaves: append-only (nothing updates or
-- deletes a row), one row per challenge (a challenge answered twice is refused), with the whole
-- request so that an auditor can decide it again against the log.
CREATE TABLE key_releases (
    seq BIGSERIAL PRIMARY KEY,
    challenge TEXT NOT NULL UNIQUE,
    released_at_ms BIGINT NOT NULL,
    model_sha256 TEXT NOT NULL,
    pcr0 TEXT NOT NULL,
    document_sha256 TEXT NOT NULL,
    release_leaf_hash TEXT NOT NULL,
    access_leaf_hash TEXT NOT NULL,
    request TEXT NOT NULL
);
