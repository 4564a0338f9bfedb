package store

import (
	"context"
	"errors"
	"fmt"

	"matchbox/dhcp"
	"matchbox/matchbox"
)

// CopyResult counts what Copy wrote.
type CopyResult struct {
	// Objects counts the catalog's objects; Kinds splits them by kind.
	Objects int
	Kinds   map[matchbox.Kind]int
	// Machines counts machines; BMCs and Inventories those of them with
	// a BMC record and an inventory.
	Machines, BMCs, Inventories int
	// Events counts timeline events, Leases DHCP leases.
	Events, Leases int
}

// Copy writes everything from holds into to, which should be empty: the
// catalog in one transaction (objects keep their sources), then each
// machine with its BMC record, last inventory, timeline and the group and
// profile it was last served, then the
// DHCP leases. Into a store that is not empty, objects, machines (with
// their timelines) and leases of the same id or address are replaced and
// the others kept. Versions restart in to; inventory history keeps only the
// last report; events keep their times, not their ids.
func Copy(ctx context.Context, from, to Backend) (CopyResult, error) {
	res := CopyResult{Kinds: map[matchbox.Kind]int{}}
	var objs []*Object
	err := from.ViewCatalog(ctx, func(c CatalogTx) error {
		for _, kind := range matchbox.Kinds() {
			list, err := c.List(kind)
			if err != nil {
				return err
			}
			objs = append(objs, list...)
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("copy: read the catalog: %w", err)
	}
	_, err = to.UpdateCatalog(ctx, func(c CatalogTx) error {
		res.Kinds = map[matchbox.Kind]int{} // fn may run again
		for _, o := range objs {
			if _, err := c.Put(o, 0); err != nil {
				return err
			}
			res.Kinds[o.Kind]++
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("copy: write the catalog: %w", err)
	}
	res.Objects = len(objs)

	after := ""
	for {
		page, err := from.ListMachines(ctx, MachineFilter{After: after, Limit: 500})
		if err != nil {
			return res, fmt.Errorf("copy: list machines: %w", err)
		}
		for _, m := range page {
			if err := copyMachine(ctx, from, to, m, &res); err != nil {
				return res, err
			}
		}
		if len(page) < 500 {
			break
		}
		after = page[len(page)-1].ID
	}

	leases, err := from.LoadLeases(ctx)
	if err != nil {
		return res, fmt.Errorf("copy: read leases: %w", err)
	}
	for _, l := range leases {
		if err := to.CommitLeases(ctx, []dhcp.LeaseWrite{{Lease: l}}); err != nil {
			return res, fmt.Errorf("copy: lease %s of %s: %w", l.IP, l.MAC, err)
		}
		res.Leases++
	}
	return res, nil
}

func copyMachine(ctx context.Context, from, to Backend, m *matchbox.Machine, res *CopyResult) error {
	// A machine of the same id in to is replaced whole, timeline included,
	// so that copying again does not repeat its events.
	if err := to.DeleteMachine(ctx, m.ID, 0); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("copy: replace machine %q: %w", m.ID, err)
	}
	if full, ok := from.LookupMachineByID(m.ID); ok && full.Inventory != nil {
		if _, err := to.RecordInventory(ctx, m.ID, *full.Inventory); err != nil {
			return fmt.Errorf("copy: inventory of machine %q: %w", m.ID, err)
		}
		res.Inventories++
	}
	if _, err := to.PutMachine(ctx, m, 0); err != nil {
		return fmt.Errorf("copy: machine %q: %w", m.ID, err)
	}
	res.Machines++
	bmc, err := from.MachineBMC(ctx, m.ID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("copy: BMC of machine %q: %w", m.ID, err)
	}
	if bmc != "" {
		if err := to.SetMachineBMC(ctx, m.ID, bmc); err != nil {
			return fmt.Errorf("copy: BMC of machine %q: %w", m.ID, err)
		}
		res.BMCs++
	}
	// Copied events carry no outcome, so the timeline leaves what the
	// machine was last served alone: it is copied as it is.
	if m.ServedGroup != "" || m.ServedProfile != "" {
		if err := to.SetMachineServed(ctx, m.ID, m.ServedGroup, m.ServedProfile); err != nil {
			return fmt.Errorf("copy: what machine %q was served: %w", m.ID, err)
		}
	}
	var afterID int64
	for {
		evs, err := from.Events(ctx, m.ID, EventFilter{AfterID: afterID, Limit: 1000})
		if err != nil {
			return fmt.Errorf("copy: events of machine %q: %w", m.ID, err)
		}
		if len(evs) == 0 {
			return nil
		}
		batch := make([]matchbox.BootEvent, len(evs))
		for i, e := range evs {
			batch[i] = matchbox.BootEvent{MachineID: m.ID, Type: e.Type, At: e.At, Detail: e.Detail}
		}
		if err := to.AppendEvents(ctx, batch); err != nil {
			return fmt.Errorf("copy: events of machine %q: %w", m.ID, err)
		}
		res.Events += len(evs)
		afterID = evs[len(evs)-1].ID
	}
}
