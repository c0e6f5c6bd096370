package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketabridge/ketabridge/auth"
	"github.com/ketabridge/ketabridge/fhir/referral"
	"github.com/ketabridge/ketabridge/store"
)

// taskMutable are the Task elements an update may change; the rest of a
// referral Task is fixed when it is created (RFL-2).
var taskMutable = []string{"status", "statusReason", "businessStatus", "output", "note", "lastModified", "meta", "text"}

// updateTask serves PUT [base]/Task/[id] with If-Match (http.html#update,
// #concurrency): a move of a referral along the state machine of
// fhir/referral by the Task's owner or requester (docs/design/security.md
// RFL-2, RFL-3). The caller acts as the owner when the Task's owner is the
// Organization its client is registered with, as the requester when the
// requester is. The new version gets the BSeR business status of its
// status; the store writes it only if the Task is still at the If-Match
// version (412 otherwise), with history, index rows and an AuditEvent.
func (s *Server) updateTask(c echo.Context) error {
	id := c.Param("id")
	if !validID(id) {
		return ErrNotFound.WithDetails("unknown resource")
	}
	a := access{interaction: auth.InteractionUpdate, typ: "Task", id: id}
	if c.Request().Method == http.MethodPatch {
		a.interaction = auth.InteractionPatch
	}
	w, err := s.caller(c)
	if err != nil {
		noteAccess(c, a, narrowing{})
		return err
	}
	if !w.allows(a.interaction, "Task") || w.org == "" {
		noteAccess(c, a, narrowing{})
		return auth.InsufficientScope("updating a referral Task needs Task update and a client registered with its Organization")
	}
	want, err := ifMatchVersion(c)
	if err != nil {
		return err
	}
	patch := c.Request().Method == http.MethodPatch
	var body []byte
	if patch {
		if mediaType(c.Request().Header.Get(echo.HeaderContentType)) != mimeJSONPatch {
			return ErrUnsupportedMedia.WithDetails("PATCH takes application/json-patch+json")
		}
		if body, err = readBody(c); err != nil {
			return err
		}
	} else if body, err = readJSONBody(c); err != nil {
		return err
	}
	// A partner is served the Task with the labels it does not clear
	// withheld (PRIV-19): its patch applies to that, so a JSON Patch test
	// of meta.security cannot probe them, and the answer is served so too.
	ctx, err := s.withOutsideView(c.Request().Context())
	if err != nil {
		noteAccess(c, a, narrowing{})
		return err
	}
	cur, err := s.store.Read(ctx, "Task", id)
	if err != nil {
		noteAccess(c, a, narrowing{})
		return err
	}
	var old map[string]any
	if err := json.Unmarshal(cur.Body, &old); err != nil {
		return err
	}
	var actor referral.Actor
	switch "Organization/" + w.org {
	case str(old, "owner", "reference"):
		actor = referral.Owner
	case str(old, "requester", "reference"):
		actor = referral.Requester
	default:
		noteAccess(c, a, narrowing{})
		return auth.InsufficientScope("the client's Organization is neither the Task's owner nor its requester")
	}
	var upd map[string]any
	if patch {
		served := cur
		if err := s.outward(ctx, &served); err != nil {
			return err
		}
		if upd, err = applyJSONPatch(served.Body, body); err != nil {
			return err
		}
		if body, err = json.Marshal(upd); err != nil {
			return err
		}
	} else {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&upd); err != nil {
			return ErrInvalid.WithDetails("the body is not a JSON object")
		}
	}
	if upd["resourceType"] != "Task" || upd["id"] != id {
		return ErrInvalid.WithDetails("the body must be the Task with the id of the URL").WithExpression("Task.id")
	}
	if issues := validatorIssues(body); len(issues) > 0 {
		return joinIssues(issues)
	}
	if changed := fixedChanged(old, upd); len(changed) > 0 {
		exprs := make([]string, len(changed))
		for i, k := range changed {
			exprs[i] = "Task." + k
		}
		return NewError(http.StatusUnprocessableEntity).WithExpression(exprs...).
			WithDetails("a referral update may change only status, statusReason, businessStatus, output and note")
	}
	from, to := referral.Status(str(old, "status")), referral.Status(str(upd, "status"))
	v := referral.Decide(referral.Move{From: from, To: to, By: actor,
		HasStatusReason: upd["statusReason"] != nil, HasOutput: upd["output"] != nil})
	if v.Code != referral.Allowed {
		return NewError(v.Code).WithExpression("Task.status").
			WithDetails("the referral cannot make this move").WithDiagnostics(v.Reason)
	}
	if want != cur.Version {
		// Checked again inside the write's transaction; this answers the
		// common case without writing.
		return NewError(http.StatusPreconditionFailed).WithExpression("If-Match")
	}
	now := s.clock.Now().UTC()
	if bs, ok := referral.BusinessStatusOf(to); ok {
		upd["businessStatus"] = map[string]any{"coding": []any{map[string]any{
			"system": referral.BusinessStatusSystem, "code": bs.Code, "display": bs.Display}}}
	}
	upd["lastModified"] = now.Format(time.RFC3339Nano)
	delete(upd, "meta")
	if m, ok := old["meta"].(map[string]any); ok {
		kept := map[string]any{}
		for k, v := range m {
			if k != "versionId" && k != "lastUpdated" {
				kept[k] = v
			}
		}
		if len(kept) > 0 {
			upd["meta"] = kept
		}
	}
	rw, err := resourceWrite("Task", upd, cur.Patient)
	if err != nil {
		return issueAt("Task", "the Task cannot be stored", err.Error())
	}
	rec := store.RecordWrite{
		Kind: recordFHIRUpdate, ClinicID: "Task/" + id, Hash: hashOf(rw.Body, []byte(cur.LastUpdated.String())),
		Source: body, Resources: []store.ResourceWrite{rw},
		Expect: []store.Expectation{{Key: store.Key{Type: "Task", ID: id}, Version: want}},
	}
	noteWrite(c, a, cur.Patient)
	if _, err := s.writer.Apply(ctx, []store.RecordWrite{rec}); err != nil {
		if errors.Is(err, store.ErrPreconditionFailed) {
			return NewError(http.StatusPreconditionFailed).WithExpression("If-Match")
		}
		return err
	}
	r, err := s.store.Read(ctx, "Task", id)
	if err != nil {
		return err
	}
	if err := s.outward(ctx, &r); err != nil {
		return err
	}
	return writeResource(c, &r)
}

// mimeJSONPatch is the media type of a JSON Patch (RFC 6902).
const mimeJSONPatch = "application/json-patch+json"

// applyJSONPatch applies a JSON Patch (RFC 6902: add, remove, replace,
// test) to the stored resource doc. A patch that does not apply is 422; a
// failed test 409 (RFC 5789 §2.2).
func applyJSONPatch(doc, patch []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, err
	}
	var ops []struct {
		Op    string          `json:"op"`
		Path  *string         `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(patch, &ops); err != nil {
		return nil, ErrInvalid.WithDetails("the body is not a JSON Patch array")
	}
	bad := func(i int, why string) error {
		return NewError(http.StatusUnprocessableEntity).WithDetails("JSON Patch operation " + strconv.Itoa(i) + ": " + why)
	}
	for i, op := range ops {
		if op.Path == nil || (*op.Path != "" && !strings.HasPrefix(*op.Path, "/")) {
			return nil, bad(i, "path must be a JSON Pointer")
		}
		var val any
		if op.Op == "add" || op.Op == "replace" || op.Op == "test" {
			if len(op.Value) == 0 {
				return nil, bad(i, "value is required")
			}
			vd := json.NewDecoder(bytes.NewReader(op.Value))
			vd.UseNumber()
			if err := vd.Decode(&val); err != nil {
				return nil, bad(i, "value is not JSON")
			}
		}
		tokens := strings.Split(*op.Path, "/")[1:]
		for j := range tokens {
			tokens[j] = strings.ReplaceAll(strings.ReplaceAll(tokens[j], "~1", "/"), "~0", "~")
		}
		if len(tokens) == 0 {
			return nil, bad(i, "the whole resource cannot be patched")
		}
		parent, err := pointerParent(root, tokens[:len(tokens)-1])
		if err != nil {
			return nil, bad(i, "path does not exist")
		}
		last := tokens[len(tokens)-1]
		switch p := parent.(type) {
		case map[string]any:
			_, exists := p[last]
			switch op.Op {
			case "add":
				p[last] = val
			case "replace", "remove":
				if !exists {
					return nil, bad(i, "path does not exist")
				}
				if op.Op == "remove" {
					delete(p, last)
				} else {
					p[last] = val
				}
			case "test":
				if !exists || !jsonEqualValues(p[last], val) {
					return nil, NewError(http.StatusConflict).WithDetails("JSON Patch test " + strconv.Itoa(i) + " failed")
				}
			default:
				return nil, bad(i, "op must be add, remove, replace or test")
			}
		case []any:
			idx, err := strconv.Atoi(last)
			if last == "-" && op.Op == "add" {
				idx, err = len(p), nil
			}
			if err != nil || idx < 0 || idx > len(p) || (op.Op != "add" && idx == len(p)) {
				return nil, bad(i, "array index out of range")
			}
			var np []any
			switch op.Op {
			case "add":
				np = append(append(append([]any{}, p[:idx]...), val), p[idx:]...)
			case "replace":
				p[idx] = val
				np = p
			case "remove":
				np = append(append([]any{}, p[:idx]...), p[idx+1:]...)
			case "test":
				if !jsonEqualValues(p[idx], val) {
					return nil, NewError(http.StatusConflict).WithDetails("JSON Patch test " + strconv.Itoa(i) + " failed")
				}
				np = p
			default:
				return nil, bad(i, "op must be add, remove, replace or test")
			}
			if err := setPointer(root, tokens[:len(tokens)-1], np); err != nil {
				return nil, bad(i, "path does not exist")
			}
		default:
			return nil, bad(i, "path does not exist")
		}
	}
	m, ok := root.(map[string]any)
	if !ok {
		return nil, ErrInvalid
	}
	return m, nil
}

func pointerParent(root any, tokens []string) (any, error) {
	cur := root
	for _, t := range tokens {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[t]
			if !ok {
				return nil, ErrNotFound
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(c) {
				return nil, ErrNotFound
			}
			cur = c[i]
		default:
			return nil, ErrNotFound
		}
	}
	return cur, nil
}

// setPointer replaces the array at tokens (a slice that grew or shrank).
func setPointer(root any, tokens []string, v any) error {
	if len(tokens) == 0 {
		return ErrInvalid
	}
	parent, err := pointerParent(root, tokens[:len(tokens)-1])
	if err != nil {
		return err
	}
	last := tokens[len(tokens)-1]
	switch p := parent.(type) {
	case map[string]any:
		p[last] = v
	case []any:
		i, err := strconv.Atoi(last)
		if err != nil || i < 0 || i >= len(p) {
			return ErrNotFound
		}
		p[i] = v
	default:
		return ErrNotFound
	}
	return nil
}

func jsonEqualValues(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return jsonEqual(x, y)
}

// fixedChanged lists the top-level elements other than taskMutable whose
// values differ between the stored Task and the update.
func fixedChanged(old, upd map[string]any) []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range []map[string]any{old, upd} {
		for k := range m {
			if seen[k] || slices.Contains(taskMutable, k) {
				continue
			}
			seen[k] = true
			a, _ := json.Marshal(old[k])
			b, _ := json.Marshal(upd[k])
			if !jsonEqual(a, b) {
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}

// jsonEqual compares two JSON values by meaning (numbers as written).
func jsonEqual(a, b []byte) bool {
	var x, y any
	da := json.NewDecoder(bytes.NewReader(a))
	da.UseNumber()
	db := json.NewDecoder(bytes.NewReader(b))
	db.UseNumber()
	if da.Decode(&x) != nil || db.Decode(&y) != nil {
		return bytes.Equal(a, b)
	}
	ca, _ := json.Marshal(x)
	cb, _ := json.Marshal(y)
	return string(ca) == string(cb)
}
