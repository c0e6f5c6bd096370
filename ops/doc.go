// Package ops is the gateway's operability: liveness (/healthz), readiness
// (/readyz, from a prober of the dependencies) and Prometheus metrics
// (/metrics: requests and latency by route template, read-cache hits and
// misses, dependency errors and state). Nothing here knows FHIR, and no
// label holds PHI (docs/design/security.md PRIV-5).
package ops
