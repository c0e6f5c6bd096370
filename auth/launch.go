package auth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// The EHR launcher (SMART App Launch 2.2 app-launch#step-2-launch-ehr,
// docs/design/security.md AZ-8): a signed-in clinician picks a registered app
// that has a launch URL and a patient; POST /auth/launch stores a
// LaunchContext under a random opaque launch id for LaunchTTL, bound to that
// client, and sends the browser to the app's launch URL with iss=<FHIR base>
// and launch=<id>. The app then presents the id at /auth/authorize, which
// redeems it once.

var errNoPatientDirectory = errors.New("auth: no patient directory configured")

// launchView is the launcher page's data.
type launchView struct {
	UserName string
	Query    string
	Clients  []store.Client
	Patients []PatientSummary
}

// handleLoginPage is GET /auth/login: the sign-in page for the launcher.
func (s *Server) handleLoginPage(c echo.Context) error {
	return s.renderLogin(c, http.StatusOK, nil, "", loginNextLaunch, "", "")
}

// launcherUser returns the signed-in user allowed to launch apps, or renders
// the page to show instead (login, or 403 for patients).
func (s *Server) launcherUser(c echo.Context) (store.User, bool, error) {
	_, u, ok := s.currentUser(c)
	if !ok {
		return store.User{}, false, s.renderLogin(c, http.StatusOK, nil, "", loginNextLaunch, "", "")
	}
	if u.Role != store.RoleClinician && u.Role != store.RoleAdmin {
		return store.User{}, false, errorPage(http.StatusForbidden, "Not allowed", "Only clinicians can launch applications.")
	}
	return u, true, nil
}

// handleLaunchPage is GET /auth/launch[?q=...].
func (s *Server) handleLaunchPage(c echo.Context) error {
	u, ok, err := s.launcherUser(c)
	if !ok {
		return err
	}
	return s.renderLauncher(c, http.StatusOK, u, c.QueryParam("q"), "")
}

func (s *Server) renderLauncher(c echo.Context, status int, u store.User, query, errMsg string) error {
	ctx := c.Request().Context()
	all, err := s.opts.Clients.ListClients(ctx)
	if err != nil {
		return err
	}
	v := launchView{UserName: displayName(u), Query: query}
	for _, cl := range all {
		if launchable(cl) {
			v.Clients = append(v.Clients, cl)
		}
	}
	sort.Slice(v.Clients, func(i, j int) bool { return v.Clients[i].Name < v.Clients[j].Name })
	if len(v.Clients) > 0 {
		dir, err := s.patientsFor(ctx, u)
		if err != nil {
			return err
		}
		v.Patients, err = dir.FindPatients(ctx, strings.TrimSpace(query), patientPickerLimit)
		if err != nil {
			return err
		}
	}
	return renderPage(c, status, "launch", pageData{Title: "Launch an application", Error: errMsg, CSRF: s.csrfToken(c), Body: v})
}

// launchable reports whether the launcher offers the client.
func launchable(cl store.Client) bool {
	if cl.LaunchURL == "" || cl.Kind == store.ClientBackend {
		return false
	}
	u, err := url.Parse(cl.LaunchURL)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// handleLaunch is POST /auth/launch: client_id and patient.
func (s *Server) handleLaunch(c echo.Context) error {
	if err := parsePageForm(c); err != nil {
		return errorPage(http.StatusBadRequest, "Bad request", "The form could not be read.")
	}
	if !checkCSRF(c) {
		return errCSRF
	}
	u, ok, err := s.launcherUser(c)
	if !ok {
		return err
	}
	r := c.Request()
	ctx := r.Context()
	cl, err := s.opts.Clients.GetClient(ctx, r.PostFormValue("client_id"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && !launchable(cl)) {
		return s.renderLauncher(c, http.StatusBadRequest, u, "", "Choose an application.")
	}
	if err != nil {
		return err
	}
	patient := strings.TrimSpace(r.PostFormValue("patient"))
	if patient == "" {
		return s.renderLauncher(c, http.StatusBadRequest, u, "", "Choose a patient.")
	}
	dir, err := s.patientsFor(ctx, u)
	if err != nil {
		return err
	}
	exists, err := dir.PatientExists(ctx, patient)
	if err != nil {
		return err
	}
	if !exists {
		return s.renderLauncher(c, http.StatusBadRequest, u, "", "That patient does not exist. Choose the patient again.")
	}
	id := authzRandom(32)
	raw, err := json.Marshal(LaunchContext{ClientID: cl.ID, UserID: u.ID, Patient: patient})
	if err != nil {
		return err
	}
	if err := s.opts.Ephemeral.Put(ctx, LaunchKey(id), raw, LaunchTTL); err != nil {
		return err
	}
	s.opts.Logger.InfoContext(ctx, "auth: ehr launch", "client_id", cl.ID)
	return c.Redirect(http.StatusFound, appendQuery(cl.LaunchURL, url.Values{"iss": {s.opts.FHIRBase()}, "launch": {id}}))
}
