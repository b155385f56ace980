-- The key release service's model keys: one per model, named by the SHA-256 of the model's
-- plaintext file (the digest its release entries name). The first key stored for a model is its
-- key for good: sealing the same model again uses it.
CREATE TABLE model_keys (
    model_sha256 TEXT PRIMARY KEY NOT NULL,
    model_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
