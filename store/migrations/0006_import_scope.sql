-- The import scope of catalog objects: which data directory (instance and
-- path) imported an object, so that an import deletes only what its own
-- data directory no longer provides. '' for objects written through the
-- API and for objects imported before scopes.
ALTER TABLE profiles ADD COLUMN import_scope TEXT NOT NULL DEFAULT '';
ALTER TABLE groups ADD COLUMN import_scope TEXT NOT NULL DEFAULT '';
ALTER TABLE templates ADD COLUMN import_scope TEXT NOT NULL DEFAULT '';
