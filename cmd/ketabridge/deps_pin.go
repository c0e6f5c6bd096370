//go:build tools

// This file pins modules the issue-5 work adds before their first import
// lands (go mod tidy would drop them otherwise). Delete a line once a real
// import of the module exists.
package main

import (
	_ "github.com/go-redis/redis_rate/v10"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "golang.org/x/time/rate"
)
