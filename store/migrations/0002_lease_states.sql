-- A declined address is kept (state 'declined') for a while under the MAC
-- that declined it, and that MAC then takes another address: a MAC is unique
-- among the leases that are not declined only.
DROP INDEX leases_mac;
CREATE UNIQUE INDEX leases_mac ON leases (mac) WHERE state <> 'declined';
