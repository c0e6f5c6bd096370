package auth

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// Login sessions of the authorization pages. A session is an opaque random id
// in the sessionCookie (HttpOnly, SameSite=Lax, Path=/auth, Secure when
// Options.SecureCookies); what it stands for lives in store.Ephemeral under
// the id's hash, so any replica can read it and nothing in the cookie can be
// forged. A fresh id is issued at every login (no session fixation).

const (
	sessionCookie = "kb_session"
	// sessionTTL bounds a login session.
	sessionTTL = 8 * time.Hour
	// loginWindow is the throttling window: after maxUserFailures failed
	// logins for one username, or maxIPFailures from one client address,
	// within it, logins are refused (429) until the window has passed.
	loginWindow     = 15 * time.Minute
	maxUserFailures = 5
	maxIPFailures   = 20
	// formMaxBytes bounds every form body the pages accept.
	formMaxBytes = 64 << 10
)

// loginSession is what a session id stands for.
type loginSession struct {
	UserID string `json:"user_id"`
	// AuthTime is when the user entered the password (id_token auth_time).
	AuthTime time.Time `json:"auth_time"`
}

func sessionKey(id string) string { return "session:" + Hash(id) }

// currentUser returns the signed-in user of the request, if any. A session of
// a user since deleted or disabled does not count.
func (s *Server) currentUser(c echo.Context) (loginSession, store.User, bool) {
	ck, err := c.Cookie(sessionCookie)
	if err != nil || !validOpaque(ck.Value) {
		return loginSession{}, store.User{}, false
	}
	ctx := c.Request().Context()
	raw, err := s.opts.Ephemeral.Get(ctx, sessionKey(ck.Value))
	if err != nil {
		return loginSession{}, store.User{}, false
	}
	var sess loginSession
	if json.Unmarshal(raw, &sess) != nil || sess.UserID == "" {
		return loginSession{}, store.User{}, false
	}
	u, err := s.opts.Users.GetUser(ctx, sess.UserID)
	if err != nil || u.Disabled {
		return loginSession{}, store.User{}, false
	}
	return sess, u, true
}

// startSession signs the user in: a new session id, replacing any earlier
// session of this browser.
func (s *Server) startSession(c echo.Context, u store.User) error {
	ctx := c.Request().Context()
	if ck, err := c.Cookie(sessionCookie); err == nil && validOpaque(ck.Value) {
		_ = s.opts.Ephemeral.Delete(ctx, sessionKey(ck.Value))
	}
	id := authzRandom(32)
	raw, err := json.Marshal(loginSession{UserID: u.ID, AuthTime: s.opts.Clock.Now().UTC()})
	if err != nil {
		return err
	}
	if err := s.opts.Ephemeral.Put(ctx, sessionKey(id), raw, sessionTTL); err != nil {
		return err
	}
	c.SetCookie(s.authCookie(sessionCookie, id, int(sessionTTL/time.Second)))
	return nil
}

// parsePageForm parses a form post of the pages: only
// application/x-www-form-urlencoded, at most formMaxBytes.
func parsePageForm(c echo.Context) error {
	r := c.Request()
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return errors.New("not a form post")
	}
	r.Body = http.MaxBytesReader(c.Response(), r.Body, formMaxBytes)
	return r.ParseForm()
}

// clientAddr is the client address throttling counts against: the address
// the Echo IPExtractor reports when one is configured (behind a trusted
// proxy), otherwise the TCP peer. Forwarding headers are not trusted by
// default, or anyone could reset their counter with a made-up header.
func clientAddr(c echo.Context) string {
	if c.Echo().IPExtractor != nil {
		return c.RealIP()
	}
	host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
	if err != nil {
		return c.Request().RemoteAddr
	}
	return host
}

// Throttling keys: counters of failures and the lock set when one reaches
// its limit. Usernames and addresses are hashed (no PHI in key names).
func loginFailKey(kind, v string) string { return "login-fail:" + kind + ":" + Hash(v) }
func loginLockKey(kind, v string) string { return "login-lock:" + kind + ":" + Hash(v) }

// loginLocked reports whether logins for the username or from the address
// are currently refused.
func (s *Server) loginLocked(ctx context.Context, user, addr string) bool {
	for _, k := range []string{loginLockKey("user", user), loginLockKey("ip", addr)} {
		if _, err := s.opts.Ephemeral.Get(ctx, k); err == nil {
			return true
		}
	}
	return false
}

// loginFailed counts a failed login and locks the username or address once
// its limit is reached. It reports whether a lock is now in place.
func (s *Server) loginFailed(ctx context.Context, user, addr string) (bool, error) {
	locked := false
	for _, l := range []struct {
		kind, v string
		max     int64
	}{{"user", user, maxUserFailures}, {"ip", addr, maxIPFailures}} {
		n, err := s.opts.Ephemeral.Incr(ctx, loginFailKey(l.kind, l.v), loginWindow)
		if err != nil {
			return false, err
		}
		if n >= l.max {
			if err := s.opts.Ephemeral.Put(ctx, loginLockKey(l.kind, l.v), []byte("1"), loginWindow); err != nil {
				return false, err
			}
			locked = true
		}
	}
	return locked, nil
}

var (
	dummyHashOnce sync.Once
	dummyHash     string
)

// checkUnknownUser spends the time of a password check for a username that
// does not exist, so response times do not tell which usernames exist.
func checkUnknownUser(pw string) {
	dummyHashOnce.Do(func() { dummyHash, _ = HashPassword("kb-dummy-" + authzRandom(16)) })
	if dummyHash != "" {
		CheckPassword(dummyHash, pw)
	}
}

// loginView is the login page's data.
type loginView struct {
	ClientName string
	RID        string
	Next       string
	Username   string
}

// loginNextLaunch is the login form's "next" value that returns to the EHR
// launcher instead of a pending authorization request.
const loginNextLaunch = "launch"

// renderLogin shows the login page for the pending request rid (or, with
// next=launch, for the launcher).
func (s *Server) renderLogin(c echo.Context, status int, p *pendingAuthz, rid, next, username, msg string) error {
	v := loginView{RID: rid, Next: next, Username: username}
	if p != nil {
		v.ClientName = p.ClientName
	}
	return renderPage(c, status, "login", pageData{Title: "Sign in", Error: msg, CSRF: s.csrfToken(c), Body: v})
}

// handleLogin is POST /auth/login: checks the CSRF token, throttling and the
// password, starts a session and sends the browser back to the consent page
// of the pending request (or to the launcher).
func (s *Server) handleLogin(c echo.Context) error {
	if err := parsePageForm(c); err != nil {
		return errorPage(http.StatusBadRequest, "Bad request", "The sign-in form could not be read.")
	}
	if !checkCSRF(c) {
		return errCSRF
	}
	ctx := c.Request().Context()
	r := c.Request()
	rid, next := r.PostFormValue("rid"), r.PostFormValue("next")
	var p *pendingAuthz
	switch {
	case rid != "":
		var status int
		var msg string
		p, status, msg = s.loadPending(c, rid)
		if p == nil {
			return errorPage(status, "Sign-in request not found", msg)
		}
		next = ""
	case next == loginNextLaunch:
	default:
		return errorPage(http.StatusBadRequest, "Bad request", "Start from the application you want to use.")
	}
	username := strings.TrimSpace(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	throttleName := strings.ToLower(username)
	addr := clientAddr(c)
	if s.loginLocked(ctx, throttleName, addr) {
		checkUnknownUser(password) // constant-ish time
		return errorPage(http.StatusTooManyRequests, "Too many sign-in attempts",
			"Too many failed sign-in attempts. Wait 15 minutes and try again.")
	}
	u, err := s.opts.Users.GetUser(ctx, username)
	ok := false
	switch {
	case err == nil:
		ok = username != "" && password != "" && CheckPassword(u.PasswordHash, password) && !u.Disabled
	case errors.Is(err, store.ErrNotFound):
		checkUnknownUser(password)
	default:
		return err
	}
	if !ok {
		locked, err := s.loginFailed(ctx, throttleName, addr)
		if err != nil {
			return err
		}
		s.opts.Logger.InfoContext(ctx, "auth: login failed", "locked", locked)
		if locked {
			return errorPage(http.StatusTooManyRequests, "Too many sign-in attempts",
				"Too many failed sign-in attempts. Wait 15 minutes and try again.")
		}
		return s.renderLogin(c, http.StatusBadRequest, p, rid, next, username, "Unknown username or wrong password.")
	}
	_ = s.opts.Ephemeral.Delete(ctx, loginFailKey("user", throttleName))
	if err := s.startSession(c, u); err != nil {
		return err
	}
	if p == nil {
		return c.Redirect(http.StatusSeeOther, "/auth/launch")
	}
	return c.Redirect(http.StatusSeeOther, consentURL(rid))
}

// handleLogout is POST /auth/logout: ends the session.
func (s *Server) handleLogout(c echo.Context) error {
	if err := parsePageForm(c); err != nil {
		return errorPage(http.StatusBadRequest, "Bad request", "The form could not be read.")
	}
	if !checkCSRF(c) {
		return errCSRF
	}
	if ck, err := c.Cookie(sessionCookie); err == nil && validOpaque(ck.Value) {
		_ = s.opts.Ephemeral.Delete(c.Request().Context(), sessionKey(ck.Value))
	}
	c.SetCookie(s.authCookie(sessionCookie, "", -1))
	return renderPage(c, http.StatusOK, "error", pageData{Title: "You are signed out"})
}
