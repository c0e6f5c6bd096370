package store

import "context"

// BulkWriter is implemented by stores with a faster write path for a large
// import (`ketabridge import --bulk`, the benchmark's ingest); callers find
// it by type assertion and fall back to plain Apply calls without it.
//
// BeginBulk starts a bulk load and returns the function that ends it.
// Between the two, Apply keeps its whole contract (atomic records, the same
// outcomes, versions, history and index rows, each call committed when it
// returns): what a bulk load changes is how the store lays the rows down,
// never what they are. Once end returns nil, every read, search, history
// and $everything answers exactly as if the same Apply calls had run
// without the bulk load (storetest "Bulk"). Reads made while the load runs
// may be slower, or fail with an error (store/sqlite: into an empty store,
// searches fail until end rebuilds the indexes), but never answer wrongly.
//
// end must be called once, also after a failed Apply; a process that dies
// before calling it leaves a store that finishes the load itself when it is
// next opened. Loads do not nest: BeginBulk while one runs is an error.
type BulkWriter interface {
	BeginBulk(ctx context.Context) (end func(context.Context) error, err error)
}
