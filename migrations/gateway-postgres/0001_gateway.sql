-- The token services' state on PostgreSQL (the same tables as migrations/gateway-sqlite after all
-- its steps), shared by every gateway replica, or every relay replica, on one database: accounts
-- of the identity service (API keys stored as SHA-256 only), TGTs issued per account and period,
-- OTT indices granted per TGT, and spent tokens per scope. Rows are pruned once the key they were
-- counted under has expired (a token under an expired key is refused before any row is read).
CREATE TABLE accounts (
    api_key_sha256 TEXT PRIMARY KEY NOT NULL,
    account TEXT NOT NULL UNIQUE
);
CREATE TABLE tgt_budget (
    account TEXT NOT NULL,
    period BIGINT NOT NULL,
    issued BIGINT NOT NULL,
    PRIMARY KEY (account, period)
);
CREATE TABLE ott_allotment (
    tgt_nonce TEXT PRIMARY KEY NOT NULL,
    granted BIGINT NOT NULL,
    last_reserved BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL
);
CREATE TABLE spent_tokens (
    scope TEXT NOT NULL,
    nonce TEXT NOT NULL,
    spent_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, nonce)
);
CREATE INDEX spent_tokens_expiry ON spent_tokens (expires_at);
CREATE INDEX ott_allotment_expiry ON ott_allotment (expires_at);
