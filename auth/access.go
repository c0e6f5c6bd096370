package auth

// Interaction is what a request asks to do, in the one access vocabulary of
// the gateway: the FHIR RESTful interactions (http.html) and operations the
// API authorizes. The values are the codes of the FHIR restful-interaction
// code system where one exists; they are also what audit records store.
type Interaction string

// Interactions the access decision knows.
const (
	InteractionRead            Interaction = "read"
	InteractionVRead           Interaction = "vread"
	InteractionHistoryInstance Interaction = "history-instance"
	InteractionHistoryType     Interaction = "history-type"
	InteractionSearch          Interaction = "search-type"
	InteractionCreate          Interaction = "create"
	InteractionUpdate          Interaction = "update"
	InteractionPatch           Interaction = "patch"
	InteractionDelete          Interaction = "delete"
	// InteractionEverything is the Patient $everything operation
	// (operation-patient-everything.html). It needs read on the Patient
	// itself; every other type of the compartment is decided separately as
	// InteractionSearch, so the operation returns only what the caller may
	// search.
	InteractionEverything Interaction = "everything"
	// InteractionExport is the Bulk Data $export operation and its status
	// and file requests. It needs a system/ scope; each exported type is
	// decided separately as InteractionSearch, so an export holds what the
	// caller's searches would (docs/design/security.md BULK-4).
	InteractionExport Interaction = "export"
)

// Write reports whether i changes data (create, update, patch, delete).
func (i Interaction) Write() bool {
	switch i {
	case InteractionCreate, InteractionUpdate, InteractionPatch, InteractionDelete:
		return true
	}
	return false
}

// Needed returns the SMART v2 permission an interaction needs
// (docs/design/security.md RS-3: r = read/vread/instance history and
// $everything on the Patient; s = type search and history; c = create; u =
// update/patch; d = delete). An unknown interaction needs nothing it can be
// granted, so it is denied (PRIV-1).
func Needed(i Interaction) (Perm, bool) {
	switch i {
	case InteractionRead, InteractionVRead, InteractionHistoryInstance, InteractionEverything:
		return PermRead, true
	case InteractionSearch, InteractionHistoryType:
		return PermSearch, true
	case InteractionCreate:
		return PermCreate, true
	case InteractionUpdate, InteractionPatch:
		return PermUpdate, true
	case InteractionDelete:
		return PermDelete, true
	}
	return 0, false
}

// Principal is who is asking: the scopes granted and the launch context.
type Principal struct {
	ClientID string
	Grant    Grant
	// Patient is the patient in context; patient/ scopes are limited to it.
	Patient string
	// PatientUser marks a patient's own login: user/ scopes are then limited
	// to the user's own record (Patient) as well.
	PatientUser bool
	// Organization is the id of the Organization the client acts for
	// (empty when none) and Role what it is to the clinic (docs/access.md;
	// docs/design/security.md PRIV-11). RoleEHR (the zero value is read as
	// it) leaves the decision to the scopes; a payer or partner is further
	// limited by its view and the patients' consents (Disclose).
	Organization string
	Role         Role
}

// Outside reports whether the principal is an outside organization (payer
// or partner), whose access is limited by its view and by consent.
func (p Principal) Outside() bool { return p.Role == RolePayer || p.Role == RolePartner }

// Decision is the outcome of an access check. The zero Decision denies. When
// Allowed, the query must be narrowed BEFORE it runs (docs/design/security.md
// PRIV-3): to Patients when non-nil, and to resources matching at least one
// of FilterSets when non-empty (each set is ANDed).
type Decision struct {
	Allowed    bool
	Patients   []string
	FilterSets [][]Filter
	// Reason is a short, PHI-free explanation for a denial (safe to log).
	Reason string
}

// Decide is the access decision for one interaction on one resource type
// (docs/design/security.md RS-3 to RS-5). Default deny.
//
// Scopes of the system/ and user/ contexts reach every patient (a user/ scope
// of a patient's own login reaches only that patient); patient/ scopes reach
// only the patient in context, and without a patient in context they reach
// nothing (fail closed). When scopes of both kinds match, the unrestricted
// ones decide alone: a union across contexts with different filters cannot be
// expressed as one narrowed query, so the decision takes the narrower reading
// and never grants what no single scope grants.
func Decide(p Principal, typ string, i Interaction) Decision {
	need, ok := Needed(i)
	if !ok {
		return Decision{Reason: "interaction not supported"}
	}
	// The scopes that grant the interaction gather in arrays on the stack
	// (a token holds a few): the decision is asked on every request, for
	// every type of a $everything (docs/design/security.md PERF-ST-15).
	var broadBuf, narrowBuf [4]Scope
	broad, narrow := broadBuf[:0], narrowBuf[:0]
	for _, s := range p.Grant.Resource {
		if s.ResourceType != "*" && s.ResourceType != typ {
			continue
		}
		if !s.Perms.Has(need) {
			continue
		}
		if s.Context == ContextPatient || (s.Context == ContextUser && p.PatientUser) {
			narrow = append(narrow, s)
		} else {
			broad = append(broad, s)
		}
	}
	switch {
	case len(broad) > 0:
		return Decision{Allowed: true, FilterSets: filterSets(broad)}
	case len(narrow) > 0:
		if p.Patient == "" {
			return Decision{Reason: "patient scope without a patient in context"}
		}
		return Decision{Allowed: true, Patients: []string{p.Patient}, FilterSets: filterSets(narrow)}
	}
	return Decision{Reason: "no scope grants " + need.String() + " on " + typ}
}

// Unrestricted reports whether d allows the interaction on every resource of
// the type: every patient, no granular filters.
func (d Decision) Unrestricted() bool {
	return d.Allowed && d.Patients == nil && len(d.FilterSets) == 0
}

// filterSets is the union of the scopes' granular constraints; any scope
// without constraints makes the whole type visible (nil).
func filterSets(scopes []Scope) [][]Filter {
	var sets [][]Filter
	for _, s := range scopes {
		if len(s.Filters) == 0 {
			return nil
		}
		sets = append(sets, s.Filters)
	}
	return sets
}
