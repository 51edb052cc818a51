-- Build logs as append-only chunks, read in `seq` order. A build keeps at most a few MiB:
-- its first chunks and its last ones; the part left out between them is one short chunk
-- saying how many bytes it held. Logs stored whole before become one chunk each.
CREATE TABLE build_log_chunks (
    build_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (build_id, seq)
);
INSERT INTO build_log_chunks (build_id, seq, body) SELECT id, 0, log FROM builds WHERE log <> '';
UPDATE builds SET log = '' WHERE log <> '';
