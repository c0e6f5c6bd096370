package fhir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/store"
)

// The write path for outside FHIR (docs/referrals.md): a partner's
// transaction Bundle carrying a referral, and the Task updates that move a
// referral's state. Every write goes through Writer.Apply as one record:
// new versions, history, index rows and the read cache's invalidation are
// the store's as for clinic records, and RecordWrite.Expect makes the
// conditional create and If-Match race-free (docs/design/security.md
// RFL-1 to RFL-4).

// Writer is the storage the write interactions use: Apply of store.Store.
type Writer interface {
	Apply(ctx context.Context, records []store.RecordWrite) ([]store.WriteResult, error)
}

// Clients tells the organization and role a client is registered with
// (GetClient of store.AuthStore).
type Clients interface {
	GetClient(ctx context.Context, id string) (store.Client, error)
}

// Record kinds of the resources written from outside.
const (
	// recordReferralIn is a partner's referral transaction; its clinic id
	// is the ServiceRequest's id.
	recordReferralIn = "referral-in"
	// recordFHIRUpdate is an update of one resource; its clinic id is
	// "Type/id".
	recordFHIRUpdate = "fhir-update"
)

// writeNamespace derives the ids of written resources (UUIDv5), so a
// re-sent referral names the same resources.
var writeNamespace = uuid.MustParse("7d6f3c1e-9a52-5b8e-8c1f-2b4e6a9d0c37")

func derivedID(parts ...string) string {
	return uuid.NewSHA1(writeNamespace, []byte(strings.Join(parts, "\x00"))).String()
}

// writeCaller is the client a write comes from.
type writeCaller struct {
	info      *auth.AccessInfo
	principal auth.Principal
	clientID  string
	org       string // the Organization id the client acts for ("" when none)
	role      auth.Role
}

// caller returns the verified client of the request with its registered
// organization and role. A client that cannot be looked up is refused
// (fail closed, docs/design/security.md PRIV-2).
func (s *Server) caller(c echo.Context) (writeCaller, error) {
	ctx := c.Request().Context()
	info, ok := auth.FromContext(ctx)
	if !ok {
		return writeCaller{}, errNoCaller
	}
	cl, err := s.clients.GetClient(ctx, info.ClientID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return writeCaller{}, auth.InsufficientScope("the client is not registered")
		}
		return writeCaller{}, err
	}
	role := auth.Role(cl.Role)
	if role == "" {
		role = auth.RoleEHR
	}
	return writeCaller{info: info, principal: info.Principal, clientID: info.ClientID, org: cl.Organization, role: role}, nil
}

// allows reports whether the caller's scopes allow interaction i on typ
// for every patient the write touches (a write narrowed to some patients
// is refused: a partner's system/ scopes are never patient-bound).
func (w writeCaller) allows(i auth.Interaction, typ string) bool {
	d := auth.Decide(w.principal, typ, i)
	return d.Allowed && d.Patients == nil && len(d.FilterSets) == 0
}

// readJSONBody reads a FHIR JSON request body: 415 for another content
// type, 413 past the body limit.
func readJSONBody(c echo.Context) ([]byte, error) {
	switch mediaType(c.Request().Header.Get(echo.HeaderContentType)) {
	case MIMEFHIRJSON, echo.MIMEApplicationJSON:
	default:
		return nil, ErrUnsupportedMedia.WithDetails("the body must be application/fhir+json")
	}
	return readBody(c)
}

// readBody reads the request body: 413 past the body limit.
func readBody(c echo.Context) ([]byte, error) {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, ErrTooLarge.WithCause(err)
		}
		return nil, ErrInvalid.WithDetails("the body could not be read").WithCause(err)
	}
	return body, nil
}

// ifMatchVersion parses If-Match: W/"n" (or "n"). Without one the answer
// is 428: an update must name the version it changes (RFL-3).
func ifMatchVersion(c echo.Context) (int64, error) {
	h := strings.TrimSpace(c.Request().Header.Get("If-Match"))
	if h == "" {
		return 0, NewError(http.StatusPreconditionRequired)
	}
	h = strings.TrimPrefix(h, "W/")
	v, err := strconv.ParseInt(strings.Trim(h, `"`), 10, 64)
	if err != nil || v < 1 || !strings.HasPrefix(h, `"`) || !strings.HasSuffix(h, `"`) {
		return 0, ErrInvalid.WithDetails("If-Match must be a version ETag, W/\"n\"")
	}
	return v, nil
}

func hashOf(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// etag is the ETag of a version.
func etag(version int64) string { return `W/"` + strconv.FormatInt(version, 10) + `"` }

// noteWrite records, for the audit trail, a write the handler made: its
// interaction, type and id, and the compartment it wrote in
// (docs/design/security.md PRIV-8: every change writes an AuditEvent).
func noteWrite(c echo.Context, a access, patient string) {
	n := auditNoteOf(c)
	if n == nil {
		return
	}
	n.access = a
	n.wrote = true
	n.touch(patient)
}
