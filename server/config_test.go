package server

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// parse builds the Config from a command line and an environment, as the
// binaries do.
func parse(args []string, env map[string]string) (Config, error) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cf := AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return Config{}, &ConfigError{Msg: err.Error()}
	}
	return cf.Config(envOf(env))
}

func TestConfigPrecedence(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c Config)
	}{
		{"defaults", nil, nil, func(t *testing.T, c Config) {
			if c.DataDir != "./data" || c.Addr != ":8080" || c.BaseURL != "http://localhost:8080" ||
				c.LogLevel != slog.LevelInfo || c.DatabaseURL != "" || c.RedisURL != "" {
				t.Errorf("defaults: %+v", c)
			}
			if c.FHIRBase() != "http://localhost:8080/fhir" || c.DBPath() != "data/ketabridge.db" {
				t.Errorf("derived: %s %s", c.FHIRBase(), c.DBPath())
			}
		}},
		{"env beats default", nil, map[string]string{
			"KETABRIDGE_DATA_DIR": "/var/lib/kb", "KETABRIDGE_ADDR": "127.0.0.1:9000",
			"KETABRIDGE_BASE_URL": "https://fhir.example.org/", "KETABRIDGE_LOG_LEVEL": "debug",
		}, func(t *testing.T, c Config) {
			if c.DataDir != "/var/lib/kb" || c.Addr != "127.0.0.1:9000" || c.BaseURL != "https://fhir.example.org" ||
				c.LogLevel != slog.LevelDebug {
				t.Errorf("%+v", c)
			}
		}},
		{"flag beats env", []string{"--data-dir", "/tmp/x", "--addr=:9100", "--base-url", "http://gw.local:9100/kb",
			"--log-level", "error"}, map[string]string{
			"KETABRIDGE_DATA_DIR": "/var/lib/kb", "KETABRIDGE_ADDR": "127.0.0.1:9000",
			"KETABRIDGE_BASE_URL": "https://fhir.example.org", "KETABRIDGE_LOG_LEVEL": "debug",
		}, func(t *testing.T, c Config) {
			if c.DataDir != "/tmp/x" || c.Addr != ":9100" || c.BaseURL != "http://gw.local:9100/kb" ||
				c.LogLevel != slog.LevelError || c.FHIRBase() != "http://gw.local:9100/kb/fhir" {
				t.Errorf("%+v", c)
			}
		}},
		{"replicated", []string{"--database-url", "postgres://kb:secret@db:5432/kb?sslmode=require"}, map[string]string{
			"KETABRIDGE_REDIS_URL": "rediss://cache:6380/1", "KETABRIDGE_RATE_LIMIT": "50.5", "KETABRIDGE_RATE_BURST": "10",
			"KETABRIDGE_CACHE_MB": "0", "KETABRIDGE_METRICS_ADDR": ":9090"}, func(t *testing.T, c Config) {
			if c.DatabaseURL != "postgres://kb:secret@db:5432/kb?sslmode=require" || c.RedisURL != "rediss://cache:6380/1" ||
				c.RateLimit != 50.5 || c.RateBurst != 10 || c.CacheMB != 0 || c.MetricsAddr != ":9090" {
				t.Errorf("%+v", c)
			}
			if strings.Contains(c.String(), "secret") {
				t.Errorf("String leaks the password: %s", c)
			}
		}},
		{"memory limit auto follows the cache", []string{"--cache-mb", "64", "--memory-limit-mb", "auto"}, nil, func(t *testing.T, c Config) {
			if c.MemoryLimitMB != 64+memoryLimitHeadroomMB {
				t.Errorf("memory limit %d MiB with a 64 MiB cache", c.MemoryLimitMB)
			}
		}},
		{"memory limit auto leaves 150 MB of RSS with the default cache", []string{"--memory-limit-mb", "auto"}, nil, func(t *testing.T, c Config) {
			// 32 MiB of cache + 56: with the binary and SQLite's page caches
			// outside the runtime, about 150 MB (docs/design/security.md PERF-ST-17).
			if c.MemoryLimitMB != 88 {
				t.Errorf("memory limit %d MiB with the default 32 MiB cache", c.MemoryLimitMB)
			}
		}},
		{"memory limit auto yields to GOMEMLIMIT", []string{"--memory-limit-mb", "auto"}, map[string]string{"GOMEMLIMIT": "1GiB"}, func(t *testing.T, c Config) {
			if c.MemoryLimitMB != 0 {
				t.Errorf("memory limit %d MiB over GOMEMLIMIT", c.MemoryLimitMB)
			}
		}},
		{"memory limit given", nil, map[string]string{"KETABRIDGE_MEMORY_LIMIT_MB": "512", "GOMEMLIMIT": "1GiB"}, func(t *testing.T, c Config) {
			if c.MemoryLimitMB != 512 {
				t.Errorf("memory limit %d MiB", c.MemoryLimitMB)
			}
		}},
		{"memory limit none by default", nil, nil, func(t *testing.T, c Config) {
			if c.MemoryLimitMB != 0 {
				t.Errorf("memory limit %d MiB by default", c.MemoryLimitMB)
			}
		}},
		{"cache on the heap by default", nil, nil, func(t *testing.T, c Config) {
			if c.CacheOffHeap {
				t.Error("cache off the heap by default")
			}
		}},
		{"cache off the heap", []string{"--cache-off-heap", "on"}, nil, func(t *testing.T, c Config) {
			if !c.CacheOffHeap {
				t.Error("--cache-off-heap on not taken")
			}
		}},
		{"gc percent 100 by default", nil, nil, func(t *testing.T, c Config) {
			if c.GCPercent != 100 {
				t.Errorf("gc percent %d by default", c.GCPercent)
			}
		}},
		{"gc percent given", nil, map[string]string{"KETABRIDGE_GC_PERCENT": "200"}, func(t *testing.T, c Config) {
			if c.GCPercent != 200 {
				t.Errorf("gc percent %d", c.GCPercent)
			}
		}},
		{"gc percent yields to GOGC", []string{"--gc-percent", "80"}, map[string]string{"GOGC": "150"}, func(t *testing.T, c Config) {
			if c.GCPercent != 0 {
				t.Errorf("gc percent %d over GOGC", c.GCPercent)
			}
		}},
		{"memory limit off", []string{"--memory-limit-mb", "0"}, nil, func(t *testing.T, c Config) {
			if c.MemoryLimitMB != 0 {
				t.Errorf("memory limit %d MiB", c.MemoryLimitMB)
			}
		}},
		{"clinic namespace and organization", []string{"--clinic-organization", "org-lakeside"}, map[string]string{
			"KETABRIDGE_IDENTIFIER_SYSTEM_BASE": "https://lakeside-ketamine.example/fhir/sid"}, func(t *testing.T, c Config) {
			if c.IdentifierSystemBase != "https://lakeside-ketamine.example/fhir/sid" || c.ClinicOrganization != "org-lakeside" {
				t.Errorf("%+v", c)
			}
		}},
		{"app frame ancestors", nil, map[string]string{
			"KETABRIDGE_APP_FRAME_ANCESTORS": "https://ehr.example  https://ehr2.example:8443"}, func(t *testing.T, c Config) {
			if strings.Join(c.AppFrameAncestors, ",") != "https://ehr.example,https://ehr2.example:8443" {
				t.Errorf("%+v", c)
			}
		}},
		{"partner logins", []string{"--partner-logins", "dr-lee=org-partner-northgate  dr-ray=Organization/0b9e"}, nil, func(t *testing.T, c Config) {
			if len(c.PartnerLogins) != 2 || c.PartnerLogins["dr-lee"] != mapping.ResourceID(clinic.KindOrganization, "org-partner-northgate") ||
				c.PartnerLogins["dr-ray"] != "0b9e" {
				t.Errorf("%+v", c.PartnerLogins)
			}
		}},
		{"urn identifier base", []string{"--identifier-system-base", "urn:example:clinic-b:sid"}, nil, func(t *testing.T, c Config) {
			if c.IdentifierSystemBase != "urn:example:clinic-b:sid" {
				t.Errorf("%+v", c)
			}
		}},
		{"flag beats an invalid env value", []string{"--log-level", "warn"}, map[string]string{
			"KETABRIDGE_LOG_LEVEL": "loud"}, func(t *testing.T, c Config) {
			if c.LogLevel != slog.LevelWarn {
				t.Errorf("%+v", c)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parse(tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // substring of the one stderr line
	}{
		{"empty data dir", []string{"--data-dir", ""}, nil, "--data-dir"},
		{"postgres without host", []string{"--database-url", "postgres:///kb"}, nil, "must name the server"},
		{"other database", []string{"--database-url", "mysql://u:secret@db/kb"}, nil, "unsupported scheme"},
		{"redis scheme", nil, map[string]string{"KETABRIDGE_REDIS_URL": "memcache://cache:6379"}, "invalid KETABRIDGE_REDIS_URL"},
		{"redis without host", []string{"--redis-url", "redis://"}, nil, "invalid --redis-url"},
		{"cache size", []string{"--cache-mb", "-1"}, nil, "invalid --cache-mb"},
		{"memory limit word", []string{"--memory-limit-mb", "lots"}, nil, "invalid --memory-limit-mb"},
		{"cache off heap word", []string{"--cache-off-heap", "maybe"}, nil, "invalid --cache-off-heap"},
		{"gc percent too low", []string{"--gc-percent", "5"}, nil, "invalid --gc-percent"},
		{"gc percent word", []string{"--gc-percent", "off"}, nil, "invalid --gc-percent"},
		{"memory limit below the cache", []string{"--cache-mb", "256", "--memory-limit-mb", "200"}, nil, "at least --cache-mb + 32"},
		{"memory limit negative", nil, map[string]string{"KETABRIDGE_MEMORY_LIMIT_MB": "-1"}, "invalid KETABRIDGE_MEMORY_LIMIT_MB"},
		{"rate limit", nil, map[string]string{"KETABRIDGE_RATE_LIMIT": "fast"}, "invalid KETABRIDGE_RATE_LIMIT"},
		{"rate burst", []string{"--rate-burst", "0"}, nil, "invalid --rate-burst"},
		{"metrics addr", []string{"--metrics-addr", "9090"}, nil, "invalid --metrics-addr"},
		{"kek missing", []string{"--key-encryption-key-file", "/nonexistent/kek"}, nil, "invalid --key-encryption-key-file"},
		{"kek short", []string{"--key-encryption-key-file", "testdata/kek-short.txt"}, nil, "32 random bytes"},
		{"addr without port", []string{"--addr", "localhost"}, nil, "invalid --addr"},
		{"addr bad port", nil, map[string]string{"KETABRIDGE_ADDR": ":99999"}, "invalid KETABRIDGE_ADDR"},
		{"base url relative", []string{"--base-url", "/fhir"}, nil, "invalid --base-url"},
		{"base url ftp", nil, map[string]string{"KETABRIDGE_BASE_URL": "ftp://x"}, "invalid KETABRIDGE_BASE_URL"},
		{"base url query", []string{"--base-url", "http://x/?a=1"}, nil, "query or fragment"},
		{"base url fragment", []string{"--base-url", "http://x/#f"}, nil, "query or fragment"},
		{"base url credentials", []string{"--base-url", "http://u:p@x"}, nil, "credentials"},
		{"log level", nil, map[string]string{"KETABRIDGE_LOG_LEVEL": "loud"}, "invalid KETABRIDGE_LOG_LEVEL"},
		{"identifier base relative", []string{"--identifier-system-base", "clinic/sid"}, nil, "absolute URI"},
		{"identifier base trailing slash", []string{"--identifier-system-base", "https://clinic.example/sid/"}, nil, "slash"},
		{"identifier base query", nil, map[string]string{"KETABRIDGE_IDENTIFIER_SYSTEM_BASE": "https://clinic.example/sid?x=1"}, "invalid KETABRIDGE_IDENTIFIER_SYSTEM_BASE"},
		{"identifier base oid", []string{"--identifier-system-base", "urn:oid:1.2.3"}, nil, "OID"},
		{"identifier base without host", []string{"--identifier-system-base", "https:/sid"}, nil, "host"},
		{"clinic organization", []string{"--clinic-organization", "org lakeside"}, nil, "invalid --clinic-organization"},
		{"app frame ancestor not an origin", []string{"--app-frame-ancestors", "https://ehr.example/chart"}, nil, "invalid --app-frame-ancestors"},
		{"app frame ancestor http", []string{"--app-frame-ancestors", "http://ehr.example"}, nil, "invalid --app-frame-ancestors"},
		{"app frame ancestor wildcard", []string{"--app-frame-ancestors", "*"}, nil, "invalid --app-frame-ancestors"},
		{"partner login without organization", []string{"--partner-logins", "dr-lee"}, nil, "invalid --partner-logins"},
		{"partner login with a path", []string{"--partner-logins", "dr-lee=Organization/a/b"}, nil, "invalid --partner-logins"},
		{"partner login twice", nil, map[string]string{"KETABRIDGE_PARTNER_LOGINS": "dr-lee=org-1 dr-lee=org-2"}, "twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(append([]string{"--data-dir", t.TempDir()}, tc.args...), tc.env)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want a *ConfigError", err)
			}
			if !strings.Contains(ce.Msg, tc.want) || strings.Contains(ce.Msg, "\n") {
				t.Errorf("%q, want one line containing %q", ce.Msg, tc.want)
			}
			if strings.Contains(ce.Msg, "secret") {
				t.Error("the message leaks a password")
			}
		})
	}
}

func TestConfigStringRedacts(t *testing.T) {
	kek := []byte("0123456789abcdef0123456789abcdef")
	c := Config{DatabaseURL: "postgres://kb:hunter2@db:5432/kb", RedisURL: "redis://:pw@cache:6379", KeyEncryptionKey: kek}
	s := c.String()
	if strings.Contains(s, "hunter2") || strings.Contains(s, ":pw@") || strings.Contains(s, string(kek)) ||
		strings.Contains(s, "MDEyMzQ1") {
		t.Errorf("String() leaks secrets: %s", s)
	}
	if !strings.Contains(s, "key-encryption-key=true") || !strings.Contains(s, "db:5432") {
		t.Errorf("String() hides what is not secret: %s", s)
	}
}
