-- The leases table keyed by its address alone: a WITHOUT ROWID table is
-- one b-tree ordered by ip, where the rowid table kept a second one (the
-- primary key's automatic index) written with every lease. The index on
-- expires_at is dropped: no query reads it, and every lease write paid for
-- it. A lease commit now touches two b-trees (the table and the partial
-- unique index on the MAC) instead of four.
CREATE TABLE leases_new (
    ip         TEXT PRIMARY KEY,
    mac        TEXT    NOT NULL,
    hostname   TEXT    NOT NULL DEFAULT '',
    expires_at INTEGER NOT NULL, -- unix seconds
    state      TEXT    NOT NULL DEFAULT 'bound',
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO leases_new (ip, mac, hostname, expires_at, state, updated_at)
    SELECT ip, mac, hostname, expires_at, state, updated_at FROM leases;
DROP TABLE leases;
ALTER TABLE leases_new RENAME TO leases;
CREATE UNIQUE INDEX leases_mac ON leases (mac) WHERE state <> 'declined';
