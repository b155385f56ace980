-- Token lifecycle: a budget of TGTs per account and period (several devices, a lost wallet), a
-- fixed allotment of OTT indices per TGT for as long as the TGT's key is valid, and rows that are
-- pruned once the key they were counted under has expired (a token under an expired key is
-- refused before any row is read, so forgetting it cannot let it be spent twice).
DROP TABLE tgt_issued;
CREATE TABLE tgt_budget (
    account TEXT NOT NULL,
    period INTEGER NOT NULL,
    issued INTEGER NOT NULL,
    PRIMARY KEY (account, period)
);
DROP TABLE ott_granted;
CREATE TABLE ott_allotment (
    tgt_nonce TEXT PRIMARY KEY NOT NULL,
    granted INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
-- Tokens spent before this migration are kept for good: their key's expiry was not recorded.
ALTER TABLE spent_tokens ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 9223372036854775807;
CREATE INDEX spent_tokens_expiry ON spent_tokens (expires_at);
CREATE INDEX ott_allotment_expiry ON ott_allotment (expires_at);
