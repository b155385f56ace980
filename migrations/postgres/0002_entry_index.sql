-- Typed entries: what lookups by kind, validity and PCR0 need. NULL for opaque entries.
ALTER TABLE entries ADD COLUMN kind BIGINT;
ALTER TABLE entries ADD COLUMN not_before BIGINT;
ALTER TABLE entries ADD COLUMN not_after BIGINT;
ALTER TABLE entries ADD COLUMN pcr0 BYTEA;
CREATE INDEX entries_by_kind ON entries (kind, idx) WHERE kind IS NOT NULL;
CREATE INDEX entries_by_pcr0 ON entries (pcr0) WHERE pcr0 IS NOT NULL;
