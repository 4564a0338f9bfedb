-- The catalog's revision: a counter every insert, update and delete of a
-- profile, group or template moves, whichever path wrote it.
CREATE TABLE catalog_revision (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    rev INTEGER NOT NULL
);
INSERT INTO catalog_revision (id, rev) VALUES (1, 0);
CREATE TRIGGER profiles_insert_rev AFTER INSERT ON profiles BEGIN UPDATE catalog_revision SET rev = rev + 1 WHERE id = 1; END;
CREATE TRIGGER profiles_update_rev AFTER UPDATE ON profiles BEGIN UPDATE catalog_revision SET rev = rev + 1 WHERE id = 1; END;
CREATE TRIGGER profiles_delete_rev AFTER DELETE ON profiles BEGIN UPDATE catalog_revision SET rev = rev + 1 WHERE id = 1; END;
CREATE TRIGGER groups_insert_rev AFTER INSERT ON groups BEGIN UPDATE catalog_revision SET rev = rev + 1 WHERE id = 1; END;
CREATE TRIGGER groups_update_rev AFTER UPDATE ON groups BEGIN UPDATE catalog_revision SET rev = rev + 1 WHERE id = 1; END;
CREATE TRIGGER groups_delete_rev AFTER DELETE ON groups BEGIN UPDATE catalog_revision SET rev = rev + 1 WHERE id = 1; END;
CREATE TRIGGER templates_insert_rev AFTER INSERT ON templates BEGIN UPDATE catalog_revision SET rev = rev + 1 WHERE id = 1; END;
CREATE TRIGGER templates_update_rev AFTER UPDATE ON templates BEGIN UPDATE catalog_revision SET rev = rev + 1 WHERE id = 1; END;
CREATE TRIGGER templates_delete_rev AFTER DELETE ON templates BEGIN UPDATE catalog_revision SET rev = rev + 1 WHERE id = 1; END;

-- The last data-directory import: the hash of the directory's content (and
-- of the binary that read it) and the catalog revision the import left. A
-- start whose directory hashes the same, on a catalog still at that
-- revision, has nothing to import.
CREATE TABLE data_dir_import (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    content_hash TEXT    NOT NULL,
    catalog_rev  INTEGER NOT NULL
);
