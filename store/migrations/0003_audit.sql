-- The audit trail: one row per change of the catalog, a machine, a BMC
-- record or the API tokens, written in the change's own transaction. Rows
-- outlive the objects they name (no foreign key).
CREATE TABLE audit (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             TEXT    NOT NULL,
    actor          TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    object_id      TEXT    NOT NULL,
    version_before INTEGER NOT NULL DEFAULT 0,
    version_after  INTEGER NOT NULL DEFAULT 0,
    detail         TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_object ON audit (kind, object_id, id);
CREATE INDEX audit_actor ON audit (actor, id);
CREATE INDEX audit_at ON audit (at);
