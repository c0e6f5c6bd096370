// Package store holds KetaBridge's state contract: serialized FHIR resources with
// version history, their search index rows, and the clinic source records they
// were mapped from. Backends (store/sqlite, later store/postgres) implement Store
// and pass the contract suite in store/storetest.
//
// Resources are mapped and serialized once, at write time; reads return the
// stored bytes and never re-map.
package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"
)

// Sentinel errors. The fhir package turns them into OperationOutcomes
// (ErrNotFound -> 404, ErrGone -> 410); nothing earlier does.
var (
	ErrNotFound = errors.New("store: not found")
	ErrGone     = errors.New("store: deleted")
)

// Key identifies a resource.
type Key struct {
	Type string
	ID   string
}

func (k Key) String() string { return k.Type + "/" + k.ID }

// Resource is one stored version of a resource.
type Resource struct {
	Type        string
	ID          string
	Version     int64
	LastUpdated time.Time
	Deleted     bool
	// Patient is the compartment the resource belongs to (see ResourceWrite).
	Patient string
	// Body is the resource's JSON with meta.versionId and meta.lastUpdated set
	// (empty for a deleted version). It is read-only: a read cache may hand
	// the same bytes to every caller.
	Body []byte
}

// IndexKind is the type of a search index row (FHIR search parameter type).
type IndexKind uint8

// Index kinds (FHIR search.html#ptypes).
const (
	KindToken IndexKind = iota + 1
	KindString
	KindDate
	KindReference
	KindNumber
	KindQuantity
)

// IndexRow is one searchable value of a resource for one search parameter.
type IndexRow struct {
	Param string
	Kind  IndexKind
	// Token: System (may be empty) and Code. Quantity: System/Code are the unit.
	System string
	Code   string
	// String: the normalized value (lower case, accents removed) for prefix
	// match. Reference: the target as "Type/id".
	Value string
	// Date: the instant range covered, as Unix milliseconds, [Lo, Hi] inclusive.
	// Number/Quantity: Num.
	Lo, Hi int64
	Num    float64
}

// ResourceWrite is one resource produced by mapping a source record.
type ResourceWrite struct {
	Type string
	ID   string
	// Patient is the id of the Patient whose compartment holds the resource
	// (the Patient's own id for a Patient; empty when it is in no patient's
	// compartment, e.g. Practitioner). A reference index row of a
	// CompartmentParams parameter to "Patient/<id>" names this patient
	// (Validate checks it), so a search by such a reference can use the
	// compartment's indexes.
	Patient string
	// Body is the resource's canonical JSON without meta.versionId and
	// meta.lastUpdated; the store stamps those (see StampMeta).
	Body  []byte
	Index []IndexRow
	// CreateOnly writes the resource only when it does not exist (or is
	// deleted): an existing one is left as it is (Unchanged), whoever
	// wrote it last. A clinic record uses it for a resource an outside
	// party moves on from there, such as the Task of a referral the clinic
	// sends, so re-sending the record does not undo their changes.
	CreateOnly bool
}

// CompartmentParams are the reference search parameters whose value
// "Patient/<id>" puts a resource in that patient's compartment (the
// parameters CompartmentDefinition/patient lists for the clinic's resource
// types are named patient or subject). ResourceWrite.Patient must agree with
// them; a store may then answer "patient=Patient/<id>" from the compartment.
var CompartmentParams = []string{"patient", "subject"}

// RecordWrite is one clinic record and everything mapped from it. The store
// writes it atomically: the source record, new versions of the resources whose
// bodies changed, deletions of resources the record no longer produces, and
// their index rows.
type RecordWrite struct {
	Kind     string
	ClinicID string
	// Hash is a digest of the canonical source record; an identical hash for
	// the same (Kind, ClinicID) means the record is unchanged.
	Hash      string
	Source    []byte
	Resources []ResourceWrite
	// Expect are preconditions on resources' current versions, checked
	// inside the write's transaction before anything of the record is
	// written (and before its Hash is compared): when one fails, the
	// record writes nothing and fails with a *PreconditionError. They make
	// writes of outside FHIR safe against concurrent writers: an update
	// with If-Match, a create that must not find its resource
	// (docs/design/security.md RFL-3).
	Expect []Expectation
}

// Expectation is one precondition of a RecordWrite: the current version of
// Key is Version, where 0 means the resource does not exist or is deleted.
type Expectation struct {
	Key     Key
	Version int64
}

// Outcome is what a write did.
type Outcome string

// Outcomes of a record or resource write.
const (
	Created   Outcome = "created"
	Updated   Outcome = "updated"
	Unchanged Outcome = "unchanged"
	Deleted   Outcome = "deleted"
)

// ResourceResult is the outcome for one resource of a record write.
type ResourceResult struct {
	Type    string
	ID      string
	Version int64
	Outcome Outcome
}

// WriteResult is the outcome of one RecordWrite.
type WriteResult struct {
	Outcome   Outcome
	Resources []ResourceResult
}

// RecordKey identifies a clinic source record.
type RecordKey struct {
	Kind     string
	ClinicID string
}

// Prefix is a FHIR search comparison prefix (search.html#prefix).
type Prefix string

// Search prefixes.
const (
	Eq Prefix = "eq"
	Ne Prefix = "ne"
	Gt Prefix = "gt"
	Lt Prefix = "lt"
	Ge Prefix = "ge"
	Le Prefix = "le"
	Sa Prefix = "sa"
	Eb Prefix = "eb"
)

// Special parameters the store answers from resource columns, not index rows.
const (
	ParamID          = "_id"
	ParamLastUpdated = "_lastUpdated"
)

// Value is one alternative of a search clause.
type Value struct {
	Prefix Prefix
	// Token: match Code, and System too when AnySystem is false (an empty
	// System with AnySystem false matches rows with no system: "|code").
	System    string
	Code      string
	AnySystem bool
	// String: prefix match on the normalized value unless Exact.
	// Reference: "Type/id". _id: the id.
	Str   string
	Exact bool
	// Date/_lastUpdated: the range the parameter value covers (Unix ms,
	// inclusive), compared per Prefix as in search.html#date.
	Lo, Hi int64
	// Number.
	Num float64
}

// Clause is one search parameter: the resource matches when any Value does.
type Clause struct {
	Param  string
	Kind   IndexKind
	Values []Value
	// Missing, when non-nil, is the :missing modifier.
	Missing *bool
	// Not is the :not modifier of a token (search.html#modifiers): the
	// resource matches when none of its index rows of Param matches any
	// Value, which includes a resource with no row of Param at all. It
	// applies to token and reference parameters and to _id, and not
	// together with Missing.
	Not bool
}

// Sort is one sort key; Param is a search parameter or _id / _lastUpdated.
type Sort struct {
	Param string
	Kind  IndexKind
	Desc  bool
}

// Query is a typed search: every Clause must match (AND). Without Sort, and
// after the Sort keys, matches come in insertion order (the order resources
// were first stored): stable, so Offset paging neither skips nor repeats.
type Query struct {
	Type    string
	Clauses []Clause
	// Patients, when non-empty, restricts matches to resources in these
	// patients' compartments. Access control sets it before the query runs.
	Patients []string
	// Access, when non-nil, restricts matches to the resources that
	// satisfy at least one of its Terms; access control sets it before the
	// query runs. It ANDs with everything else in the Query and applies to
	// the matches, Total, CountOnly, paging and sort alike.
	Access *Access
	Sort   []Sort
	Count  int
	Offset int
	// Total asks for the number of all matches (-1 in the result otherwise).
	Total bool
	// CountOnly returns only the total (_summary=count).
	CountOnly bool
}

// Access is what a caller may see, as a restriction of a query: a
// resource is visible when ANY Term matches it (OR). A non-nil Access with
// no Terms matches nothing (default deny); a nil *Access restricts nothing.
// The fhir layer builds it from auth's disclosure decision
// (docs/design/security.md PRIV-1, PRIV-3) so a query can never reach
// past it.
type Access struct {
	Terms []AccessTerm
}

// AccessTerm matches a resource when ALL of these hold:
//   - Patients is empty, or the resource is in one of their compartments
//     (an empty Patients does not restrict the compartment: the term also
//     matches resources in no compartment, such as a Practitioner);
//   - Types is empty, or the resource is of one of them (a Search of a type
//     the term does not list gets nothing from the term);
//   - every Clause matches (AND), with the semantics of Query.Clauses; a
//     clause's parameter is the resource's own type's. Patient/$everything
//     spans types, so there a term with Clauses must list its Types.
type AccessTerm struct {
	Patients []string
	Types    []string
	Clauses  []Clause
}

// SearchResult is a page of matches.
type SearchResult struct {
	Resources []Resource
	// Total is the number of all matches, or -1 when not asked for.
	Total int
	// More reports whether matches exist beyond this page.
	More bool
}

// Ref is a reference from one stored resource to another, by search parameter.
type Ref struct {
	From   Key
	Param  string
	Target Key
}

// Compartments returns the patients whose compartments hold every match of
// q, when q names them: the values of a compartment reference clause
// (CompartmentParams, every value "Patient/<id>"; Validate keeps such
// references and a resource's compartment in agreement), or else the
// Patients access control restricted q to, or else, when every term of
// q.Access names patients, the union of the terms' patients (in order of
// first appearance). nil when q names none. A store may drive a search
// through per-compartment indexes with them.
func (q *Query) Compartments() []string {
	for i := range q.Clauses {
		c := &q.Clauses[i]
		if c.Kind != KindReference || c.Missing != nil || c.Not || !slices.Contains(CompartmentParams, c.Param) {
			continue
		}
		ids := make([]string, 0, len(c.Values))
		for _, v := range c.Values {
			id, ok := strings.CutPrefix(v.Str, "Patient/")
			if !ok || id == "" {
				ids = nil
				break
			}
			ids = append(ids, id)
		}
		if len(ids) > 0 {
			return ids
		}
	}
	if len(q.Patients) > 0 {
		return q.Patients
	}
	return q.Access.patients()
}

// patients returns the union of the terms' Patients, in order of first
// appearance, when every term names some; nil otherwise (no terms, a term
// open to every compartment, or a nil Access).
func (a *Access) patients() []string {
	if a == nil || len(a.Terms) == 0 {
		return nil
	}
	n := 0
	for _, t := range a.Terms {
		if len(t.Patients) == 0 {
			return nil
		}
		n += len(t.Patients)
	}
	if len(a.Terms) == 1 {
		return a.Terms[0].Patients
	}
	seen := make(map[string]bool, n)
	out := make([]string, 0, n)
	for _, t := range a.Terms {
		for _, p := range t.Patients {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// EverythingQuery selects a patient's compartment for Patient/$everything.
type EverythingQuery struct {
	Patient string
	// Types, when non-empty, limits the resource types (_type).
	Types []string
	// Since, when non-zero, keeps resources updated at or after it (_since).
	Since time.Time
	// Access, when non-nil, restricts the resources as Query.Access does
	// (a term whose Patients do not include Patient matches nothing here).
	Access *Access
	Count  int
	Offset int
}

// Store is the resource store. All methods are safe for concurrent use.
type Store interface {
	// Apply writes each record atomically and reports per-record outcomes in
	// order. An error means nothing of the failing record was written.
	//
	// A record whose Hash equals the stored one for its (Kind, ClinicID) is
	// Unchanged and writes nothing. Otherwise each resource whose body
	// (compared by a SHA-256 of the unstamped body) differs from its current
	// version gets a new version stamped with StampMeta (Created when new or
	// previously deleted, Updated otherwise), its index rows replaced;
	// resources the record produced before but no longer produces (and that
	// no other record took over since) get a deletion version (Deleted).
	// Every version written by one call carries the same lastUpdated, the
	// clock's now truncated to milliseconds, taken under the store's write
	// lock; when a version of one of the call's resource types already
	// committed is later than that (another replica's clock ran ahead), the
	// call stamps that version's lastUpdated instead. So within a type,
	// lastUpdated never decreases in commit order, and a poll with
	// _lastUpdated=ge<the latest seen> misses no change. When some records fail (bad
	// data, or a write error rolled back to the record alone), the others
	// are committed, the failed ones have Outcome Failed, and the error is a
	// *BatchError. Any other error means nothing was written.
	Apply(ctx context.Context, records []RecordWrite) ([]WriteResult, error)
	// SourceRecords returns the stored source records for the keys that exist.
	SourceRecords(ctx context.Context, keys []RecordKey) (map[RecordKey][]byte, error)

	// Read returns the current version (http.html#read). A deleted resource
	// returns its deletion version and ErrGone; an unknown one ErrNotFound.
	Read(ctx context.Context, typ, id string) (Resource, error)
	// VRead returns one version (http.html#vread). An unknown resource or
	// version is ErrNotFound; a deletion version is returned with ErrGone.
	VRead(ctx context.Context, typ, id string, version int64) (Resource, error)
	// History returns a page of a resource's versions, newest first,
	// deletion versions included (http.html#history), and the number of all
	// versions. count <= 0 means no limit. An unknown resource is
	// ErrNotFound.
	History(ctx context.Context, typ, id string, count, offset int) ([]Resource, int, error)
	// GetMany returns the current, non-deleted versions of the keys that
	// exist, in the order of keys, each key at most once; callers apply
	// access control to the result.
	GetMany(ctx context.Context, keys []Key) ([]Resource, error)

	// Search runs a typed query (search.html). Only current, non-deleted
	// versions match. Every Clause must match (AND); within a Clause any
	// Value may (OR). Matching, per kind (search.html#ptypes):
	//   - token: Code, and System too unless AnySystem ("|code" matches rows
	//     with no system; "system|" with an empty Code matches any code in
	//     System);
	//   - string: prefix match on NormalizeString of Str, or equality of the
	//     normalized forms when Exact (the index holds normalized values only);
	//   - date and _lastUpdated: the resource range [lo, hi] against the value
	//     range [Lo, Hi] as search.html#date defines it: eq: Lo <= lo and
	//     hi <= Hi; ne: not eq; gt: hi > Hi; lt: lo < Lo; ge: gt or eq;
	//     le: lt or eq; sa: lo > Hi; eb: hi < Lo;
	//   - reference: the target "Type/id" equals Str;
	//   - number and quantity: Num compared per Prefix (sa as gt, eb as lt);
	//     quantity also matches System and Code when set;
	//   - _id: the resource id equals Str;
	//   - Missing (:missing) ignores Values: true matches resources with no
	//     index row for the parameter, false those with one;
	//   - Not (:not) matches resources none of whose index rows for the
	//     parameter match a Value (those with no row included); on _id, the
	//     resources whose id is none of the Values.
	// Access, when non-nil, keeps the matches that satisfy one of its terms
	// (see AccessTerm); a non-nil Access without terms matches nothing.
	// Order: the Sort keys (a parameter sorts by the lowest of a resource's
	// values ascending and the highest descending, resources without a value
	// last; dates by range start ascending, range end descending), then
	// insertion order. Count <= 0 returns every match from Offset.
	Search(ctx context.Context, q Query) (SearchResult, error)
	// Refs returns the references the given current, non-deleted resources
	// make through params (all reference params when params is empty): the
	// basis of _include (search.html#include). Refs are grouped by source
	// resource in the order of from (each key once), then ordered by param
	// and target. Targets that are not "Type/id" are skipped.
	Refs(ctx context.Context, from []Key, params []string) ([]Ref, error)
	// Everything returns a page of a patient's compartment for
	// Patient/$everything (patient-operation-everything.html): current,
	// non-deleted resources whose compartment is q.Patient, the Patient
	// itself first, then ordered by type and id; Types limits the types
	// (_type), Since keeps resources updated at or after it (_since),
	// Access (see AccessTerm) keeps those one of its terms matches. The
	// int is the number of all matches. Count <= 0 returns every match from
	// Offset. An unknown or deleted patient yields no resources and a total
	// of 0 (the caller decides between 404 and 410 with Read).
	Everything(ctx context.Context, q EverythingQuery) ([]Resource, int, error)

	// Ping checks the backend is reachable.
	Ping(ctx context.Context) error
	Close() error
}

// Clock tells the time; stores take one so tests control lastUpdated.
type Clock interface{ Now() time.Time }

// SystemClock is the wall clock.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// ErrUnavailable marks an error caused by a dependency that cannot be
// reached or is shutting down (the database, Redis): the request may succeed
// when it is back. Backends wrap connection-level failures with it; the HTTP
// layers answer 503 (FHIR OperationOutcome "transient", OAuth
// temporarily_unavailable) rather than 500.
var ErrUnavailable = errors.New("store: dependency unavailable")
