package matchbox

// All reports whether a template with these refs may read any variable:
// its answer may depend on every variable it is given.
func (r *VarRefs) All() bool { return r == nil || r.all }

// None reports whether a template with these refs reads no variable: its
// answer is the same whatever it is given.
func (r *VarRefs) None() bool { return r != nil && !r.all && len(r.names) == 0 }
