-- Declarative catalog: profiles, groups and templates. spec holds the
-- object's JSON; version counts its writes (the API's ETag); source is the
-- data-directory file an object was imported from ('' when written through
-- the API).
CREATE TABLE profiles (
    id         TEXT PRIMARY KEY,
    spec       TEXT    NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1,
    source     TEXT    NOT NULL DEFAULT '',
    updated_at TEXT    NOT NULL
);

CREATE TABLE groups (
    id         TEXT PRIMARY KEY,
    spec       TEXT    NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1,
    source     TEXT    NOT NULL DEFAULT '',
    updated_at TEXT    NOT NULL
);

CREATE TABLE templates (
    kind       TEXT    NOT NULL CHECK (kind IN ('ignition', 'generic')),
    name       TEXT    NOT NULL,
    content    TEXT    NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1,
    source     TEXT    NOT NULL DEFAULT '',
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (kind, name)
);

-- Machines and what is known of them.
CREATE TABLE machines (
    id           TEXT PRIMARY KEY,
    uuid         TEXT    NOT NULL DEFAULT '',
    serial       TEXT    NOT NULL DEFAULT '',
    hostname     TEXT    NOT NULL DEFAULT '',
    ip           TEXT    NOT NULL DEFAULT '',
    labels       TEXT    NOT NULL DEFAULT '{}',
    state        TEXT    NOT NULL DEFAULT 'discovered',
    group_id     TEXT    NOT NULL DEFAULT '',
    pxe_disabled INTEGER NOT NULL DEFAULT 0,
    inventory    TEXT    NOT NULL DEFAULT '',
    bmc          TEXT    NOT NULL DEFAULT '',
    version      INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);
CREATE INDEX machines_uuid ON machines (uuid) WHERE uuid != '';

CREATE TABLE machine_macs (
    mac        TEXT PRIMARY KEY,
    machine_id TEXT NOT NULL REFERENCES machines (id) ON DELETE CASCADE
);
CREATE INDEX machine_macs_machine ON machine_macs (machine_id);

-- Every inventory a machine reported, newest last.
CREATE TABLE inventory_history (
    machine_id  TEXT    NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    inventory   TEXT    NOT NULL,
    reported_at TEXT    NOT NULL,
    PRIMARY KEY (machine_id, seq)
);

-- The boot timeline of every machine.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_id TEXT NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    at         TEXT NOT NULL,
    type       TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_machine ON events (machine_id, id);

-- DHCP leases of the authoritative server.
CREATE TABLE leases (
    ip         TEXT PRIMARY KEY,
    mac        TEXT    NOT NULL,
    hostname   TEXT    NOT NULL DEFAULT '',
    expires_at INTEGER NOT NULL, -- unix seconds
    state      TEXT    NOT NULL DEFAULT 'bound',
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX leases_mac ON leases (mac);
CREATE INDEX leases_expiry ON leases (expires_at);
