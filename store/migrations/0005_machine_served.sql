-- The group and profile the boot endpoints last served each machine.
ALTER TABLE machines ADD COLUMN served_group TEXT NOT NULL DEFAULT '';
ALTER TABLE machines ADD COLUMN served_profile TEXT NOT NULL DEFAULT '';
