// Package ketabridge holds no code: it is the repository root, where
// deps_test.go keeps the rooms of docs/design/architecture.md as code. Each
// package has one job and may import only what its row of that table
// allows; the test fails when an import points anywhere else.
//
// The product is cmd/ketabridge, the benchmark cmd/ketabridge-bench; README
// says how to run them.
package ketabridge
