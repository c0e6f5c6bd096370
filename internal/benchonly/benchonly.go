// Package benchonly holds what only the benchmark harness (bench,
// cmd/ketabridge-bench) may ask of a gateway. It is internal to the module,
// so no outside code can import it, and nothing in it is reachable from the
// gateway's command line or configuration: a deployed gateway always audits
// (docs/design/security.md PRIV-8, AUD-ARCH-2).
package benchonly

import "context"

type unauditedKey struct{}

// Unaudited marks ctx so that server.Open, given it, serves the FHIR API
// without writing AuditEvents: the benchmark's baseline for what auditing
// costs a read (docs/benchmarks.md). Never use it outside the benchmark.
func Unaudited(ctx context.Context) context.Context {
	return context.WithValue(ctx, unauditedKey{}, true)
}

// IsUnaudited reports whether ctx was marked by Unaudited.
func IsUnaudited(ctx context.Context) bool {
	v, _ := ctx.Value(unauditedKey{}).(bool)
	return v
}
