-- The gateway's state: accounts of the identity service (API keys stored as SHA-256 only), the
-- TGT issued to each account per period, OTT batches granted per TGT and period, spent OTTs.
CREATE TABLE accounts (
    api_key_sha256 TEXT PRIMARY KEY NOT NULL,
    account TEXT NOT NULL UNIQUE
);
CREATE TABLE tgt_issued (
    account TEXT NOT NULL,
    period INTEGER NOT NULL,
    PRIMARY KEY (account, period)
);
CREATE TABLE ott_granted (
    tgt_nonce TEXT NOT NULL,
    period INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (tgt_nonce, period)
);
CREATE TABLE spent_tokens (
    scope TEXT NOT NULL,
    nonce TEXT NOT NULL,
    spent_at INTEGER NOT NULL,
    PRIMARY KEY (scope, nonce)
);
