package priorauth

import "testing"

// TestSelectByRoute: a policy that names routes covers only courses given by
// one of them; the IV ketamine criteria do not judge an IM, oral or
// sublingual course, nor one whose order names no route.
func TestSelectByRoute(t *testing.T) {
	const iv, im, sl, nasal = "47625008", "78421000", "37839007", "46713006"
	ps := Policies()
	for _, tc := range []struct {
		therapy, route string
		want           string // policy id, "" for none
	}{
		{TherapyKetamine, iv, "ketamine-iv"},
		{TherapyKetamine, im, ""},
		{TherapyKetamine, sl, ""},
		{TherapyKetamine, "", ""},
		{TherapyEsketamine, nasal, "esketamine-trd"},
	} {
		got := ""
		if p := Select(ps, tc.therapy, tc.route, nil); p != nil {
			got = p.ID
		}
		if got != tc.want {
			t.Errorf("Select(%s, %q) = %q, want %q", tc.therapy, tc.route, got, tc.want)
		}
	}
}
