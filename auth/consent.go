package auth

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/store"
)

// The consent page (docs/design/security.md AZ-6, AZ-9 to AZ-11, NEG-8): the
// signed-in user sees which app asks for what, may untick any scope (grant a
// subset), may narrow Observation and Condition read/search scopes to
// categories, picks the patient when a clinician launches standalone, and
// approves or denies.
//
// Patient context (AZ-9, AZ-10): a patient user always gets their own record
// (User.FHIRUser Patient/{id}), without a picker; an EHR launch has the
// patient the launcher chose; a clinician launching standalone picks one
// whenever a granted scope needs it (a patient/ scope or launch/patient).
// No patient/ scope is ever granted without a patient in context.
//
// need_patient_banner is true for standalone launches (the app shows who the
// patient is) and false for EHR launches, whose launcher already shows the
// patient (SMART App Launch 2.2 scopes-and-launch-context#need_patient_banner).

// patientPickerLimit is how many patients the picker lists.
const patientPickerLimit = 25

// Sub-resource categories offered for Observation and Condition read/search
// scopes (docs/design/security.md AZ-11; ONC granular scope selection). A
// chosen category becomes `patient/Type.rs?category=code` (code only: it
// matches the category in any code system, as a FHIR token search does).
var subCategories = map[string][]string{
	"Observation": {"clinical-test", "laboratory", "social-history", "sdoh", "survey", "vital-signs"},
	"Condition":   {"encounter-diagnosis", "problem-list-item", "health-concern"},
}

// scopeOption is one checkbox of the consent page.
type scopeOption struct {
	Value    string
	Label    string
	Wildcard bool
	Subs     []scopeOption
}

// pickerPatient is one radio button of a patient picker.
type pickerPatient struct {
	PatientSummary
	Selected bool
}

// consentView is the consent page's data.
type consentView struct {
	ClientName string
	UserName   string
	RID        string
	Query      string
	EHRLaunch  bool
	// Patient describes the patient in context when there is no picker.
	Patient    string
	NeedPicker bool
	Patients   []pickerPatient
	Scopes     []scopeOption
}

// subScopes lists the category scopes offered under a requested scope: only
// for patient/ read/search scopes without filters on Observation, Condition
// or *.
func subScopes(scope string) (opts []scopeOption, wildcard bool) {
	sc, err := ParseScope(scope)
	if err != nil || sc.Context != ContextPatient || len(sc.Filters) > 0 ||
		sc.Perms == 0 || !(PermRead | PermSearch).Has(sc.Perms) {
		return nil, false
	}
	types := []string{sc.ResourceType}
	if sc.ResourceType == "*" {
		types = []string{"Condition", "Observation"}
	}
	for _, typ := range types {
		for _, code := range subCategories[typ] {
			sub := Scope{Context: sc.Context, ResourceType: typ, Perms: sc.Perms,
				Filters: []Filter{{Param: "category", Code: code}}}
			opts = append(opts, scopeOption{Value: sub.String(), Label: describeScope(sub.String())})
		}
	}
	return opts, sc.ResourceType == "*"
}

// grantedScopes computes the grant from the consent form: of the offered
// scopes, those ticked; a ticked Observation/Condition scope with chosen
// categories is replaced by them; categories chosen under an unticked scope
// are granted alone; under a ticked wildcard they are already covered. Form
// values that were not offered are ignored (never widened).
func grantedScopes(offered, ticked, chosenSubs []string) []string {
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, o := range offered {
		subs, wildcard := subScopes(o)
		var chosen []string
		for _, sub := range subs {
			if slices.Contains(chosenSubs, sub.Value) {
				chosen = append(chosen, sub.Value)
			}
		}
		on := slices.Contains(ticked, o)
		switch {
		case on && (wildcard || len(chosen) == 0):
			add(o)
		default: // ticked with categories chosen, or unticked
			for _, c := range chosen {
				add(c)
			}
		}
	}
	return out
}

// needsPatient reports whether granting scopes needs a patient in context
// (docs/design/security.md AZ-9, AZ-10).
func needsPatient(scopes []string) bool {
	for _, s := range scopes {
		if s == "launch/patient" || strings.HasPrefix(s, "patient/") {
			return true
		}
	}
	return false
}

// consentContext works out the patient context of a pending request for the
// user: the fixed patient id (EHR launch or patient user) or that a picker is
// needed. ok is false (with an error status and message) when the user may
// not continue this request.
func (s *Server) consentContext(p *pendingAuthz, u store.User) (patient string, picker bool, status int, msg string) {
	switch {
	case p.EHRLaunch:
		if p.LaunchUser != "" && p.LaunchUser != u.ID {
			return "", false, http.StatusForbidden, "This launch was started by another user."
		}
		return p.Patient, false, 0, ""
	case u.Role == store.RolePatient:
		id, ok := strings.CutPrefix(u.FHIRUser, "Patient/")
		if !ok || id == "" {
			return "", false, http.StatusForbidden, "Your account is not linked to a patient record."
		}
		return id, false, 0, ""
	default:
		return "", needsPatient(p.Scopes), 0, ""
	}
}

// handleConsentPage is GET /auth/consent?rid=...[&q=...]: the login page
// when nobody is signed in, else the consent page.
func (s *Server) handleConsentPage(c echo.Context) error {
	rid := c.QueryParam("rid")
	p, status, msg := s.loadPending(c, rid)
	if p == nil {
		return errorPage(status, "Sign-in request not found", msg)
	}
	_, u, ok := s.currentUser(c)
	if !ok {
		return s.renderLogin(c, http.StatusOK, p, rid, "", "", "")
	}
	return s.renderConsent(c, http.StatusOK, p, rid, u, c.QueryParam("q"), "", "")
}

// renderConsent shows the consent page; selected is the patient to preselect.
func (s *Server) renderConsent(c echo.Context, status int, p *pendingAuthz, rid string, u store.User, query, selected, errMsg string) error {
	patient, picker, st, msg := s.consentContext(p, u)
	if st != 0 {
		return errorPage(st, "Access cannot be granted", msg)
	}
	v := consentView{
		ClientName: p.ClientName,
		UserName:   displayName(u),
		RID:        rid,
		Query:      query,
		EHRLaunch:  p.EHRLaunch,
		NeedPicker: picker,
	}
	if patient != "" {
		v.Patient = "Patient/" + patient
		if u.Role == store.RolePatient {
			v.Patient = "your own record (Patient/" + patient + ")"
		}
	}
	if picker {
		dir, err := s.patientsFor(c.Request().Context(), u)
		if err != nil {
			return err
		}
		found, err := dir.FindPatients(c.Request().Context(), strings.TrimSpace(query), patientPickerLimit)
		if err != nil {
			return err
		}
		for _, f := range found {
			v.Patients = append(v.Patients, pickerPatient{PatientSummary: f, Selected: f.ID == selected})
		}
	}
	for _, sc := range p.Scopes {
		subs, wildcard := subScopes(sc)
		v.Scopes = append(v.Scopes, scopeOption{Value: sc, Label: describeScope(sc), Wildcard: wildcard, Subs: subs})
	}
	return renderPage(c, status, "consent", pageData{Title: "Allow access", Error: errMsg, CSRF: s.csrfToken(c), Body: v})
}

// handleConsent is POST /auth/consent: Deny redirects access_denied (NEG-8);
// Allow issues the authorization code (AZ-6, AZ-7).
func (s *Server) handleConsent(c echo.Context) error {
	if err := parsePageForm(c); err != nil {
		return errorPage(http.StatusBadRequest, "Bad request", "The form could not be read.")
	}
	if !checkCSRF(c) {
		return errCSRF
	}
	r := c.Request()
	ctx := r.Context()
	rid := r.PostFormValue("rid")
	p, status, msg := s.loadPending(c, rid)
	if p == nil {
		return errorPage(status, "Sign-in request not found", msg)
	}
	sess, u, ok := s.currentUser(c)
	if !ok {
		return s.renderLogin(c, http.StatusOK, p, rid, "", "", "Your session has ended. Sign in again.")
	}
	patient, picker, st, msg := s.consentContext(p, u)
	if st != 0 {
		return errorPage(st, "Access cannot be granted", msg)
	}
	switch r.PostFormValue("action") {
	case "deny":
		if _, err := s.opts.Ephemeral.Take(ctx, pendingKey(rid)); err != nil {
			return errorPage(http.StatusBadRequest, "Sign-in request not found", "This request was already completed.")
		}
		return c.Redirect(http.StatusFound, authzErrorURL(p.RedirectURI, "access_denied", "the user denied the request", p.State))
	case "approve":
	default:
		return errorPage(http.StatusBadRequest, "Bad request", "Choose Allow or Deny.")
	}
	granted := grantedScopes(p.Scopes, r.PostForm["scope"], r.PostForm["sub"])
	chosen := strings.TrimSpace(r.PostFormValue("patient"))
	if len(granted) == 0 {
		return s.renderConsent(c, http.StatusBadRequest, p, rid, u, "", chosen, "Choose at least one permission, or Deny.")
	}
	if picker {
		patient = ""
		if needsPatient(granted) {
			if chosen == "" {
				return s.renderConsent(c, http.StatusBadRequest, p, rid, u, "", "", "Choose the patient.")
			}
			dir, err := s.patientsFor(ctx, u)
			if err != nil {
				return err
			}
			exists, err := dir.PatientExists(ctx, chosen)
			if err != nil {
				return err
			}
			if !exists {
				return s.renderConsent(c, http.StatusBadRequest, p, rid, u, "", "", "That patient does not exist. Choose the patient again.")
			}
			patient = chosen
		}
	}
	if needsPatient(granted) && patient == "" { // AZ-10: fail closed
		return errorPage(http.StatusBadRequest, "Access cannot be granted", "No patient is in context for patient-level access.")
	}
	return s.issueCode(c, p, rid, sess, u, granted, patient)
}

// issueCode uses up the pending request rid and redirects to the client with
// a new authorization code for the granted scopes and patient
// (docs/design/security.md AZ-6, AZ-7). The request is used up before the
// code exists: a double submit cannot mint two codes.
func (s *Server) issueCode(c echo.Context, p *pendingAuthz, rid string, sess loginSession, u store.User, granted []string, patient string) error {
	ctx := c.Request().Context()
	if _, err := s.opts.Ephemeral.Take(ctx, pendingKey(rid)); err != nil {
		return errorPage(http.StatusBadRequest, "Sign-in request not found", "This request was already completed.")
	}
	code := authzRandom(32)
	ac := AuthCode{
		ClientID:      p.ClientID,
		RedirectURI:   p.RedirectURI,
		CodeChallenge: p.CodeChallenge,
		Scope:         strings.Join(granted, " "),
		UserID:        u.ID,
		Patient:       patient,
		NeedBanner:    !p.EHRLaunch,
		EHRLaunch:     p.EHRLaunch,
		Nonce:         p.Nonce,
		AuthTime:      sess.AuthTime,
		GrantID:       uuid.NewString(),
	}
	if p.EHRLaunch {
		ac.Encounter = p.Encounter
	}
	raw, err := json.Marshal(ac)
	if err != nil {
		return err
	}
	if err := s.opts.Ephemeral.Put(ctx, CodeKey(code), raw, CodeTTL); err != nil {
		return err
	}
	s.opts.Logger.InfoContext(ctx, "auth: authorization granted", "client_id", p.ClientID, "ehr_launch", p.EHRLaunch)
	return c.Redirect(http.StatusFound, appendQuery(p.RedirectURI, map[string][]string{"code": {code}, "state": {p.State}}))
}

// displayName is how the pages greet a user.
func displayName(u store.User) string {
	if u.Name != "" {
		return u.Name
	}
	return u.ID
}

// describeScope is the plain-language line of a scope on the consent page.
func describeScope(s string) string {
	switch s {
	case "openid":
		return "Confirm your identity"
	case "fhirUser", "profile":
		return "Know who you are (your user record)"
	case "launch":
		return "Open with the record system's current context"
	case "launch/patient":
		return "Know which patient is selected"
	case "launch/encounter":
		return "Know which encounter is selected"
	case "offline_access":
		return "Keep access after you close the app (until you revoke it)"
	case "online_access":
		return "Keep access while you are signed in"
	}
	sc, err := ParseScope(s)
	if err != nil {
		return s
	}
	var verbs []string
	for _, p := range []struct {
		p Perm
		w string
	}{{PermRead, "read"}, {PermSearch, "search"}, {PermCreate, "create"}, {PermUpdate, "update"}, {PermDelete, "delete"}} {
		if sc.Perms&p.p != 0 {
			verbs = append(verbs, p.w)
		}
	}
	what := sc.ResourceType + " records"
	if sc.ResourceType == "*" {
		what = "all records"
	}
	var whose string
	switch sc.Context {
	case ContextPatient:
		whose = "of the patient in context"
	case ContextUser:
		whose = "you can access"
	case ContextSystem:
		whose = "of every patient"
	}
	line := strings.ToUpper(verbs[0][:1]) + verbs[0][1:]
	if len(verbs) > 1 {
		line += ", " + strings.Join(verbs[1:len(verbs)-1], ", ")
		line = strings.TrimSuffix(line, ", ") + " and " + verbs[len(verbs)-1]
	}
	line += " " + what + " " + whose
	for _, f := range sc.Filters {
		line += " (" + f.Param + ": " + f.Code + ")"
	}
	return line
}
