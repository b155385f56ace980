-- An OTT reservation is one statement (the same on SQLite and PostgreSQL): the upsert that grows
-- a TGT's allotment records by how much it grew it, and returns that.
ALTER TABLE ott_allotment ADD COLUMN last_reserved INTEGER NOT NULL DEFAULT 0;
