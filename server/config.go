package server

import (
	"crypto/tls"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ketabridge/ketabridge/apps/course"
	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/mapping"
	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/ingest"
)

// Config is the configuration of a gateway, built once from flags with
// KETABRIDGE_* environment fallbacks (a flag beats the environment, which
// beats the default) and validated once at start (ConfigFlags.Config).
type Config struct {
	// DataDir holds the SQLite database and other local state.
	DataDir string
	// DatabaseURL selects the database; empty is SQLite at DBPath.
	DatabaseURL string
	// RedisURL selects Redis for the read cache, the shared auth state and
	// the rate limits; empty is in-memory (one process).
	RedisURL string
	// RedisPrefix begins every Redis key; replicas of one gateway share it.
	RedisPrefix string
	// KeyEncryptionKey, read from --key-encryption-key-file, encrypts the
	// signing keys at rest (nil: stored in clear).
	KeyEncryptionKey []byte
	// ReadCache turns the read cache on (default) or off.
	ReadCache bool
	// CacheMB bounds the in-memory read cache (no Redis), or each replica's
	// near cache in front of Redis; 0 disables it.
	CacheMB int
	// CacheOffHeap puts the in-memory read cache's values outside the Go
	// heap (memory.NewOffHeapCache, docs/design/security.md PERF-ST-9).
	CacheOffHeap bool
	// MemoryLimitMB is the Go runtime's soft memory limit in MiB
	// (ApplyMemoryLimit); 0 (the default) sets none. "auto" is CacheMB +
	// memoryLimitHeadroomMB.
	MemoryLimitMB int
	// GCPercent is the Go collector's GOGC (ApplyMemoryLimit): 100 by
	// default, the runtime's own; 0 leaves the runtime's (GOGC when set).
	GCPercent int
	// RateLimit is the per-client request rate (tokens/s); 0 disables it.
	RateLimit float64
	// RateBurst is the per-client bucket size.
	RateBurst int
	// ExportMaxJobs is how many running Bulk Data exports one client may
	// have; ExportFileSize the most resources per export file;
	// ExportExpiry how long a finished export stays (docs/bulk-export.md).
	ExportMaxJobs  int
	ExportFileSize int
	ExportExpiry   time.Duration
	// IngestLimits bound one batch of the ingest API: the body, one record
	// and the records of a batch (docs/clinic-records.md, Limits).
	IngestLimits ingest.Limits
	// IngestAsyncRecords is the batch size above which a request with
	// Prefer: respond-async is answered 202 with a status URL.
	IngestAsyncRecords int
	// MetricsAddr, when set, is a separate listener for /metrics.
	MetricsAddr string
	// Addr is the listen address of serve, host:port.
	Addr string
	// BaseURL is the public base URL of the gateway (no trailing slash); the
	// FHIR base is BaseURL + "/fhir".
	BaseURL string
	// LogLevel is the minimum level logged.
	LogLevel slog.Level
	// TLSCert and TLSKey are PEM files; when set, serve speaks HTTPS only
	// (TLS 1.2 or later). Both or neither.
	TLSCert, TLSKey string
	// IdentifierSystemBase is the clinic's namespace for the identifier
	// systems of its own ids (mapping.Options.IdentifierSystemBase) and of
	// its PAS requests (fhir.Options.IdentifierSystemBase): an
	// absolute URI without a trailing slash; empty is
	// codes.DefaultIdentifierSystemBase (docs/fhir-mapping.md).
	IdentifierSystemBase string
	// ClinicOrganization is the clinic id of the clinic's own organization
	// record (mapping.Options.Organization); empty: none configured.
	ClinicOrganization string
	// PayerCoverageOnly relaxes the payer view to "a coverage naming the
	// payer is enough" (--payer-access coverage; docs/access.md). The
	// default (consent) also requires an active Consent naming the payer
	// for payment.
	PayerCoverageOnly bool
	// AppFrameAncestors are the origins (the EHRs') allowed to frame the
	// course viewer at /apps/course/; empty: none (docs/design/security.md
	// VIEW-2).
	AppFrameAncestors []string
	// PartnerLogins binds logins to the FHIR ids of the partner clinic
	// Organizations they act for (--partner-logins login=organization ...,
	// the organization the clinic's record id or Organization/{id};
	// docs/design/security.md PRIV-18).
	PartnerLogins map[string]string

	// Version is the build's version, shown in the CapabilityStatement (set
	// by the binary, not a setting).
	Version string
}

// DBPath is the SQLite database file.
func (c Config) DBPath() string { return filepath.Join(c.DataDir, "ketabridge.db") }

// FHIRBase is the FHIR base URL clients use.
func (c Config) FHIRBase() string { return c.BaseURL + "/fhir" }

// TokenEndpoint is the token endpoint URL the gateway advertises: the
// audience of client assertions.
func (c Config) TokenEndpoint() string { return c.BaseURL + "/auth/token" }

// String describes the configuration with secrets (passwords in URLs, the
// key-encryption key) redacted, for logs.
func (c Config) String() string {
	return fmt.Sprintf("data-dir=%s database-url=%s redis-url=%s addr=%s base-url=%s log-level=%s read-cache=%t "+
		"cache-mb=%d cache-off-heap=%t memory-limit-mb=%d gc-percent=%d rate-limit=%g rate-burst=%d export-max-jobs=%d export-file-size=%d export-expiry=%s ingest-limits=%d/%d/%d metrics-addr=%s key-encryption-key=%t identifier-system-base=%s "+
		"clinic-organization=%s payer-access-coverage-only=%t app-frame-ancestors=%s partner-logins=%d",
		c.DataDir, RedactURL(c.DatabaseURL), RedactURL(c.RedisURL), c.Addr, c.BaseURL, c.LogLevel,
		c.ReadCache, c.CacheMB, c.CacheOffHeap, c.MemoryLimitMB, c.GCPercent, c.RateLimit, c.RateBurst, c.ExportMaxJobs, c.ExportFileSize, c.ExportExpiry,
		c.IngestLimits.MaxBytes, c.IngestLimits.MaxRecordBytes, c.IngestLimits.MaxRecords, c.MetricsAddr, c.KeyEncryptionKey != nil,
		c.IdentifierSystemBase, c.ClinicOrganization, c.PayerCoverageOnly, strings.Join(c.AppFrameAncestors, ","), len(c.PartnerLogins))
}

// RedactURL is s with the password of its userinfo, if any, replaced.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// ConfigError is a configuration or command-line problem: one line, exit
// code 2.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// Setting is one shared setting: its flag name, environment variable,
// default and meaning.
type Setting struct {
	Name, Env, Default, Usage string
}

// Settings are the settings every subcommand of both binaries shares, in the
// order usage texts list them.
var Settings = []Setting{
	{"data-dir", "KETABRIDGE_DATA_DIR", "./data", "directory for local state (SQLite database)"},
	{"database-url", "KETABRIDGE_DATABASE_URL", "", "postgres://... for PostgreSQL (replicas); empty = SQLite at {data-dir}/ketabridge.db"},
	{"redis-url", "KETABRIDGE_REDIS_URL", "", "redis://... for the read cache, shared auth state and rate limits of replicas; empty = in process"},
	{"redis-prefix", "KETABRIDGE_REDIS_PREFIX", "ketabridge:", "prefix of every Redis key (one per gateway deployment sharing a Redis)"},
	{"key-encryption-key-file", "KETABRIDGE_KEY_ENCRYPTION_KEY_FILE", "", "file holding a base64 32-byte key that encrypts the signing keys in the database (same file on every replica)"},
	{"read-cache", "KETABRIDGE_READ_CACHE", "on", "read cache: on (Redis when --redis-url is set, else in memory for SQLite) or off"},
	{"cache-mb", "KETABRIDGE_CACHE_MB", "32", "in-memory read cache size in MiB: the whole cache without Redis, each replica's near cache with it (0 = none)"},
	{"cache-off-heap", "KETABRIDGE_CACHE_OFF_HEAP", "off", "on: the in-memory read cache's values outside the Go heap (memory mapped): up to --cache-mb less RSS, but the collector, losing them as room to grow, collects more often (more CPU per cached read); off: on the heap"},
	{"memory-limit-mb", "KETABRIDGE_MEMORY_LIMIT_MB", "0", "soft limit of the Go runtime's memory in MiB (the garbage collector works harder near it, never fails for it); 0 = none (the default: GOMEMLIMIT, if set); auto = --cache-mb + 56 (GOMEMLIMIT, when set, wins over auto)"},
	{"gc-percent", "KETABRIDGE_GC_PERCENT", "100", "the Go garbage collector's GOGC: the heap may grow this many percent past what is live before a collection; 50 keeps it at 1.5x the live heap instead of 2x, for less RSS and more CPU per request (GOGC, when set, wins)"},
	{"rate-limit", "KETABRIDGE_RATE_LIMIT", "200", "requests per second per OAuth client (token bucket; 0 = no limit)"},
	{"rate-burst", "KETABRIDGE_RATE_BURST", "400", "token-bucket size per OAuth client"},
	{"export-max-jobs", "KETABRIDGE_EXPORT_MAX_JOBS", "3", "running Bulk Data exports per OAuth client (429 beyond)"},
	{"export-file-size", "KETABRIDGE_EXPORT_FILE_SIZE", "100000", "most resources per Bulk Data export file"},
	{"export-expiry", "KETABRIDGE_EXPORT_EXPIRY", "24h", "how long a finished Bulk Data export and its files stay"},
	{"ingest-max-body-mb", "KETABRIDGE_INGEST_MAX_BODY_MB", "64", "largest request body of the ingest API in MiB (413 above it)"},
	{"ingest-max-record-kb", "KETABRIDGE_INGEST_MAX_RECORD_KB", "4096", "largest clinic record in KiB (a larger one is rejected on its own; import too)"},
	{"ingest-max-records", "KETABRIDGE_INGEST_MAX_RECORDS", "50000", "most records in one batch of the ingest API (413 above it)"},
	{"ingest-async-records", "KETABRIDGE_INGEST_ASYNC_RECORDS", "1000", "batches above this many records sent with Prefer: respond-async are answered 202 with a status URL"},
	{"metrics-addr", "KETABRIDGE_METRICS_ADDR", "", "listen address of a separate /metrics listener; empty = /metrics on --addr for loopback callers only"},
	{"addr", "KETABRIDGE_ADDR", ":8080", "listen address host:port"},
	{"base-url", "KETABRIDGE_BASE_URL", "http://localhost:8080", "public base URL; the FHIR base is {base-url}/fhir"},
	{"log-level", "KETABRIDGE_LOG_LEVEL", "info", "log level: debug, info, warn or error"},
	{"tls-cert", "KETABRIDGE_TLS_CERT", "", "PEM certificate chain; with --tls-key, serve HTTPS (TLS >= 1.2)"},
	{"tls-key", "KETABRIDGE_TLS_KEY", "", "PEM private key of --tls-cert"},
	{"identifier-system-base", "KETABRIDGE_IDENTIFIER_SYSTEM_BASE", "", "the clinic's namespace for the identifier systems of its own ids and of its PAS requests, an absolute URI without a trailing slash; empty = http://ketabridge.org/fhir/sid"},
	{"clinic-organization", "KETABRIDGE_CLINIC_ORGANIZATION", "", "clinic id of the clinic's own organization record (Provenance agent, Encounter.serviceProvider); empty = none"},
	{"payer-access", "KETABRIDGE_PAYER_ACCESS", "consent", "what opens a patient to a payer client: consent (a coverage naming the payer and an active consent naming it for payment) or coverage (the coverage alone); docs/access.md"},
	{"app-frame-ancestors", "KETABRIDGE_APP_FRAME_ANCESTORS", "", "space-separated origins (https://ehr.example) allowed to frame the course viewer at /apps/course/; empty = none"},
	{"partner-logins", "KETABRIDGE_PARTNER_LOGINS", "", "space-separated login=organization pairs: logins of a partner clinic's clinicians, each bound to the clinic's record id of that partner Organization; their tokens, in any app, get the partner's view (docs/access.md); empty = none"},
}

// IsSetting reports whether name is the flag of a shared setting.
func IsSetting(name string) bool {
	for _, s := range Settings {
		if s.Name == name {
			return true
		}
	}
	return false
}

// ConfigFlags are the shared settings registered on one FlagSet.
type ConfigFlags struct {
	fs   *flag.FlagSet
	vals map[string]*string
}

// AddFlags registers the shared settings on fs.
func AddFlags(fs *flag.FlagSet) *ConfigFlags {
	cf := &ConfigFlags{fs: fs, vals: map[string]*string{}}
	for _, s := range Settings {
		cf.vals[s.Name] = fs.String(s.Name, s.Default, s.Usage+" (env "+s.Env+")")
	}
	return cf
}

// Config builds the validated Config once the FlagSet is parsed: a flag
// given beats the environment variable (getenv), which beats the default. A
// bad value is a *ConfigError naming where it came from.
func (cf *ConfigFlags) Config(getenv func(string) string) (Config, error) {
	given := map[string]bool{}
	cf.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	r := reader{vals: map[string]string{}, source: map[string]string{}, getenv: getenv}
	for _, s := range Settings {
		v, src := *cf.vals[s.Name], "--"+s.Name
		if !given[s.Name] {
			if e := getenv(s.Env); e != "" {
				v, src = e, s.Env
			} else {
				src = "default --" + s.Name
			}
		}
		r.vals[s.Name], r.source[s.Name] = strings.TrimSpace(v), src
	}
	var c Config
	for _, step := range []func(*reader, *Config) error{readStorage, readLimits, readListen, readMapping} {
		if err := step(&r, &c); err != nil {
			return Config{}, err
		}
	}
	return c, nil
}

// reader holds the settings' values and where each came from.
type reader struct {
	vals, source map[string]string
	getenv       func(string) string
}

func (r *reader) bad(name, why string) error {
	return &ConfigError{Msg: "invalid " + r.source[name] + ": " + why}
}

// readStorage reads where state lives: the data directory, the database,
// Redis and the key-encryption key.
func readStorage(r *reader, c *Config) error {
	if c.DataDir = r.vals["data-dir"]; c.DataDir == "" {
		return r.bad("data-dir", "must not be empty")
	}
	if c.DatabaseURL = r.vals["database-url"]; c.DatabaseURL != "" {
		u, err := url.Parse(c.DatabaseURL)
		switch {
		case err != nil || u.Scheme == "":
			return r.bad("database-url", "must be a URL such as postgres://host/db, or empty for SQLite")
		case u.Scheme == "postgres" || u.Scheme == "postgresql":
			if u.Host == "" && u.Query().Get("host") == "" {
				return r.bad("database-url", "must name the server, e.g. postgres://user@db.example.org:5432/ketabridge")
			}
		default:
			return r.bad("database-url", "unsupported scheme "+strconv.Quote(u.Scheme)+" (postgres://..., or empty for SQLite)")
		}
	}
	if c.RedisURL = r.vals["redis-url"]; c.RedisURL != "" {
		u, err := url.Parse(c.RedisURL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			return r.bad("redis-url", "must be redis://host:port/db or rediss://... (or empty for the in-memory cache)")
		}
	}
	c.RedisPrefix = r.vals["redis-prefix"]
	if c.RedisPrefix == "" || len(c.RedisPrefix) > 64 || strings.ContainsAny(c.RedisPrefix, " *?[]\n") {
		return r.bad("redis-prefix", "must be 1-64 characters without spaces or glob characters")
	}
	if f := r.vals["key-encryption-key-file"]; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return r.bad("key-encryption-key-file", "cannot read it: "+err.Error())
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(key) != 32 {
			return r.bad("key-encryption-key-file", "must hold 32 random bytes in base64 (e.g. from `openssl rand -base64 32`)")
		}
		c.KeyEncryptionKey = key
	}
	return nil
}

// readLimits reads the read cache and the rate limits.
func readLimits(r *reader, c *Config) error {
	switch strings.ToLower(r.vals["read-cache"]) {
	case "on", "true", "1":
		c.ReadCache = true
	case "off", "false", "0":
	default:
		return r.bad("read-cache", "must be on or off")
	}
	var err error
	if c.CacheMB, err = strconv.Atoi(r.vals["cache-mb"]); err != nil || c.CacheMB < 0 || c.CacheMB > 1<<16 {
		return r.bad("cache-mb", "must be a whole number of MiB from 0 (no cache) to 65536")
	}
	switch r.vals["cache-off-heap"] {
	case "on", "true", "1":
		c.CacheOffHeap = true
	case "off", "false", "0":
	default:
		return r.bad("cache-off-heap", "must be on or off")
	}
	switch v := r.vals["memory-limit-mb"]; v {
	case "auto":
		c.MemoryLimitMB = c.CacheMB + memoryLimitHeadroomMB
		if r.getenv("GOMEMLIMIT") != "" {
			c.MemoryLimitMB = 0 // the runtime read it at start
		}
	default:
		if c.MemoryLimitMB, err = strconv.Atoi(v); err != nil || c.MemoryLimitMB < 0 || (c.MemoryLimitMB > 0 && c.MemoryLimitMB < c.CacheMB+32) {
			return r.bad("memory-limit-mb", "must be auto, 0 (none) or a whole number of MiB at least --cache-mb + 32")
		}
	}
	if c.GCPercent, err = strconv.Atoi(r.vals["gc-percent"]); err != nil || c.GCPercent < 10 || c.GCPercent > 1000 {
		return r.bad("gc-percent", "must be a whole number from 10 to 1000")
	}
	if r.getenv("GOGC") != "" {
		c.GCPercent = 0 // the runtime read it at start
	}
	if c.RateLimit, err = strconv.ParseFloat(r.vals["rate-limit"], 64); err != nil || c.RateLimit < 0 ||
		math.IsInf(c.RateLimit, 0) || math.IsNaN(c.RateLimit) {
		return r.bad("rate-limit", "must be requests per second per client, >= 0 (0 = no limit)")
	}
	if c.RateBurst, err = strconv.Atoi(r.vals["rate-burst"]); err != nil || c.RateBurst < 1 {
		return r.bad("rate-burst", "must be a whole number >= 1")
	}
	if c.ExportMaxJobs, err = strconv.Atoi(r.vals["export-max-jobs"]); err != nil || c.ExportMaxJobs < 1 {
		return r.bad("export-max-jobs", "must be a whole number >= 1")
	}
	if c.ExportFileSize, err = strconv.Atoi(r.vals["export-file-size"]); err != nil || c.ExportFileSize < 1 {
		return r.bad("export-file-size", "must be a whole number >= 1")
	}
	if c.ExportExpiry, err = time.ParseDuration(r.vals["export-expiry"]); err != nil || c.ExportExpiry < time.Minute {
		return r.bad("export-expiry", "must be a duration of at least 1m, e.g. 24h")
	}
	return readIngestLimits(r, c)
}

// readIngestLimits reads the ingest API's limits (docs/design/security.md
// IN-3).
func readIngestLimits(r *reader, c *Config) error {
	mb, err := strconv.Atoi(r.vals["ingest-max-body-mb"])
	if err != nil || mb < 1 || mb > 4096 {
		return r.bad("ingest-max-body-mb", "must be a whole number of MiB from 1 to 4096")
	}
	kb, err := strconv.Atoi(r.vals["ingest-max-record-kb"])
	if err != nil || kb < 64 || kb > 1<<20 {
		return r.bad("ingest-max-record-kb", "must be a whole number of KiB from 64 to 1048576")
	}
	n, err := strconv.Atoi(r.vals["ingest-max-records"])
	if err != nil || n < 1 || n > 10_000_000 {
		return r.bad("ingest-max-records", "must be a whole number from 1 to 10000000")
	}
	c.IngestLimits = ingest.Limits{MaxBytes: int64(mb) << 20, MaxRecordBytes: kb << 10, MaxRecords: n}
	if c.IngestAsyncRecords, err = strconv.Atoi(r.vals["ingest-async-records"]); err != nil || c.IngestAsyncRecords < 1 {
		return r.bad("ingest-async-records", "must be a whole number >= 1")
	}
	return nil
}

// readListen reads where and how the gateway listens and logs.
func readListen(r *reader, c *Config) error {
	if c.MetricsAddr = r.vals["metrics-addr"]; c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return r.bad("metrics-addr", "must be host:port, e.g. :9090")
		}
	}
	c.Addr = r.vals["addr"]
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return r.bad("addr", "must be host:port, e.g. :8080 or 127.0.0.1:8080")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return r.bad("addr", "port must be a number from 0 to 65535")
	}
	if strings.ContainsAny(host, "/ ") {
		return r.bad("addr", "host must be an IP address or a host name")
	}
	c.BaseURL = strings.TrimRight(r.vals["base-url"], "/")
	u, err := url.Parse(c.BaseURL)
	switch {
	case err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return r.bad("base-url", "must be an absolute http(s) URL, e.g. https://fhir.example.org")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(c.BaseURL, "#"):
		return r.bad("base-url", "must not have a query or fragment")
	case u.User != nil:
		return r.bad("base-url", "must not contain credentials")
	}
	c.TLSCert, c.TLSKey = r.vals["tls-cert"], r.vals["tls-key"]
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return &ConfigError{Msg: "invalid TLS configuration: give both --tls-cert and --tls-key, or neither"}
	case c.TLSCert != "":
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			return r.bad("tls-cert", "cannot load the certificate and key: "+err.Error())
		}
	}
	levels := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn,
		"warning": slog.LevelWarn, "error": slog.LevelError}
	level, ok := levels[strings.ToLower(r.vals["log-level"])]
	if !ok {
		return r.bad("log-level", "must be debug, info, warn or error")
	}
	c.LogLevel = level
	for _, o := range strings.Fields(r.vals["app-frame-ancestors"]) {
		if err := course.CheckFrameAncestor(o); err != nil {
			return r.bad("app-frame-ancestors", err.Error())
		}
		c.AppFrameAncestors = append(c.AppFrameAncestors, o)
	}
	for _, pair := range strings.Fields(r.vals["partner-logins"]) {
		login, org, ok := strings.Cut(pair, "=")
		// The organization is the clinic's record id (as `clients add
		// --organization` takes it) or Organization/{FHIR id}.
		if id, isRef := strings.CutPrefix(org, "Organization/"); isRef {
			org = id
		} else if auth.ValidID(org) && !strings.Contains(org, "/") {
			org = mapping.ResourceID(clinic.KindOrganization, org)
		} else {
			ok = false
		}
		if !ok || !auth.ValidID(login) || !auth.ValidID(org) || strings.Contains(org, "/") {
			return r.bad("partner-logins", "must be login=organization pairs, the organization the clinic's record id or Organization/{id} (e.g. dr-lee=org-partner-northgate)")
		}
		if c.PartnerLogins == nil {
			c.PartnerLogins = map[string]string{}
		}
		if _, dup := c.PartnerLogins[login]; dup {
			return r.bad("partner-logins", "names the login "+login+" twice")
		}
		c.PartnerLogins[login] = org
	}
	return nil
}

// readMapping reads the clinic's namespace and organization
// (docs/fhir-mapping.md, Identifier systems).
func readMapping(r *reader, c *Config) error {
	if c.IdentifierSystemBase = r.vals["identifier-system-base"]; c.IdentifierSystemBase != "" {
		b := c.IdentifierSystemBase
		u, err := url.Parse(b)
		switch {
		case err != nil || !u.IsAbs() || strings.ContainsAny(b, " \t\n#?"):
			return r.bad("identifier-system-base", "must be an absolute URI without query or fragment, e.g. https://clinic.example/fhir/sid")
		case strings.HasSuffix(b, "/"):
			return r.bad("identifier-system-base", "must not end with a slash: the mapper appends /mrn, /session, ...")
		case strings.HasPrefix(strings.ToLower(b), "urn:oid:"):
			return r.bad("identifier-system-base", "an OID takes no path (/mrn, /session, ...): use a URL the clinic controls")
		case u.Scheme != "urn" && u.Host == "":
			return r.bad("identifier-system-base", "must name a host, e.g. https://clinic.example/fhir/sid")
		}
	}
	if c.ClinicOrganization = r.vals["clinic-organization"]; c.ClinicOrganization != "" && !clinic.ValidID(c.ClinicOrganization) {
		return r.bad("clinic-organization", "must be the clinic id of an organization record: 1-64 letters, digits, '.', '_' or '-'")
	}
	switch strings.ToLower(r.vals["payer-access"]) {
	case "consent":
	case "coverage":
		c.PayerCoverageOnly = true
	default:
		return r.bad("payer-access", "must be consent (the default: coverage and consent) or coverage (coverage alone)")
	}
	return nil
}

// WriteFlags writes the flags of fs for a usage text: the command's own
// flags first, then the shared settings with their environment variables
// and defaults.
func WriteFlags(w io.Writer, fs *flag.FlagSet) {
	own := false
	fs.VisitAll(func(f *flag.Flag) {
		if IsSetting(f.Name) {
			return
		}
		if !own {
			fmt.Fprintln(w, "\nflags:")
			own = true
		}
		name, usage := flag.UnquoteUsage(f)
		arg := "--" + f.Name
		if name != "" {
			arg += " " + name
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "  %-26s %s%s\n", arg, usage, def)
	})
	fmt.Fprintln(w, "\nshared flags (flag beats environment beats default):")
	for _, s := range Settings {
		def := s.Default
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%-24s %s (env %s, default %s)\n", s.Name, s.Usage, s.Env, def)
	}
}
