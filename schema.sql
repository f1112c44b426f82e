-- The synchronizer's SQLite schema. Applied on every start (idempotent);
-- meta.schema_version says which version wrote the file.

-- Key/value facts about the database: schema_version, last_seq (the highest
-- seq ever handed out, so seqs are never reused even after pruning),
-- pruned_through (every change with seq <= this is gone from the log).
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per entity: who owns it, its content hash and when the source last
-- observed it (RFC 3339 UTC with nanoseconds, so it sorts as text). core_hash
-- covers only type, id, name, parent_key, state, project and links: a push
-- event equal in those to the baseline changes nothing, so push and poll do
-- not flip an entity's data back and forth.
CREATE TABLE IF NOT EXISTS baseline (
    key         TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    type        TEXT NOT NULL,
    hash        TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    core_hash   TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;

-- The latest full entity per key, as JSON (the contract's entity object).
-- Keys start with "<type>:", so a type is a key range: no index on type.
CREATE TABLE IF NOT EXISTS entities (
    key    TEXT PRIMARY KEY,
    type   TEXT NOT NULL,
    entity TEXT NOT NULL
) WITHOUT ROWID;

-- The change log. seq is assigned by the synchronizer, strictly increasing
-- and never reused; entity is the entity as of the change (for a delete: as
-- last seen).
CREATE TABLE IF NOT EXISTS changes (
    seq    INTEGER PRIMARY KEY,
    key    TEXT NOT NULL,
    type   TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    source TEXT NOT NULL,
    at     TEXT NOT NULL,
    entity TEXT NOT NULL
);
