package referral

import (
	"slices"
	"strings"
	"testing"
)

// matrix is every move of a referral Task and its verdict, per actor: rows
// are the current status, columns the requested one, in the order of
// Statuses. "=" is a move that keeps the status (allowed), "ok" an allowed
// transition (given statusReason and output where required), 409 a move
// the actor may not make from there.
var matrix = map[Actor][]string{
	Owner: {
		//            requested received accepted rejected in-progress completed cancelled
		/* requested   */ "=   ok  409 409 409 409 409",
		/* received    */ "409 =   ok  ok  409 409 409",
		/* accepted    */ "409 409 =   409 ok  409 409",
		/* rejected    */ "409 409 409 =   409 409 409",
		/* in-progress */ "409 409 409 409 =   ok  409",
		/* completed   */ "409 409 409 409 409 =   409",
		/* cancelled   */ "409 409 409 409 409 409 =",
	},
	Requester: {
		/* requested   */ "=   409 409 409 409 409 ok",
		/* received    */ "409 =   409 409 409 409 ok",
		/* accepted    */ "409 409 =   409 409 409 409",
		/* rejected    */ "409 409 409 =   409 409 409",
		/* in-progress */ "409 409 409 409 =   409 409",
		/* completed   */ "409 409 409 409 409 =   409",
		/* cancelled   */ "409 409 409 409 409 409 =",
	},
	ConsentWithdrawn: {
		/* requested   */ "=   409 409 409 409 409 ok",
		/* received    */ "409 =   409 409 409 409 ok",
		/* accepted    */ "409 409 =   409 409 409 ok",
		/* rejected    */ "409 409 409 =   409 409 409",
		/* in-progress */ "409 409 409 409 =   409 ok",
		/* completed   */ "409 409 409 409 409 =   409",
		/* cancelled   */ "409 409 409 409 409 409 =",
	},
}

// TestDecideMatrix checks every (from, to, actor) move against the matrix
// (docs/design/security.md RFL-2), and that a refusal names the moves the
// actor may make instead.
func TestDecideMatrix(t *testing.T) {
	for actor, rows := range matrix {
		if len(rows) != len(Statuses) {
			t.Fatalf("%s: %d rows", actor, len(rows))
		}
		for i, row := range rows {
			cells := strings.Fields(row)
			if len(cells) != len(Statuses) {
				t.Fatalf("%s row %d: %d cells", actor, i, len(cells))
			}
			from := Statuses[i]
			for j, cell := range cells {
				to := Statuses[j]
				v := Decide(Move{From: from, To: to, By: actor, HasStatusReason: true, HasOutput: true})
				want := Conflict
				if cell == "=" || cell == "ok" {
					want = Allowed
				}
				if v.Code != want {
					t.Errorf("%s %s -> %s: %d (%s), want %s", actor, from, to, v.Code, v.Reason, cell)
					continue
				}
				if v.Code != Allowed {
					if v.Reason == "" {
						t.Errorf("%s %s -> %s: refused without a reason", actor, from, to)
					}
					for _, n := range v.Next {
						if !strings.Contains(v.Reason, string(n)) {
							t.Errorf("%s %s -> %s: reason %q does not name the allowed move to %s", actor, from, to, v.Reason, n)
						}
					}
				}
				// Next agrees with the matrix: the "ok" cells of the row.
				if cell == "ok" && !slices.Contains(Next(from, actor), to) {
					t.Errorf("%s: Next(%s) lacks %s", actor, from, to)
				}
				if cell != "ok" && slices.Contains(Next(from, actor), to) {
					t.Errorf("%s: Next(%s) has %s", actor, from, to)
				}
			}
		}
	}
}

// TestDecideRequirements checks what a target status needs (422) and the
// statuses outside a referral's life.
func TestDecideRequirements(t *testing.T) {
	cases := []struct {
		name string
		m    Move
		want int
		says string
	}{
		{"reject without statusReason", Move{From: Received, To: Rejected, By: Owner}, Unprocessable, "statusReason"},
		{"reject with statusReason", Move{From: Received, To: Rejected, By: Owner, HasStatusReason: true}, Allowed, ""},
		{"complete without output", Move{From: InProgress, To: Completed, By: Owner}, Unprocessable, "output"},
		{"complete with output", Move{From: InProgress, To: Completed, By: Owner, HasOutput: true}, Allowed, ""},
		{"cancel needs no reason", Move{From: Requested, To: Cancelled, By: Requester}, Allowed, ""},
		{"accept needs nothing", Move{From: Received, To: Accepted, By: Owner}, Allowed, ""},
		{"unknown target draft", Move{From: Requested, To: "draft", By: Owner}, Unprocessable, "allowed: received"},
		{"unknown target on-hold", Move{From: Accepted, To: "on-hold", By: Owner}, Unprocessable, "allowed: in-progress"},
		{"unknown target by requester", Move{From: Requested, To: "failed", By: Requester}, Unprocessable, "allowed: cancelled"},
		{"requester accepting", Move{From: Received, To: Accepted, By: Requester}, Conflict, "only the owner"},
		{"owner cancelling", Move{From: Requested, To: Cancelled, By: Owner}, Conflict, "only the requester"},
		{"skipping received", Move{From: Requested, To: Accepted, By: Owner}, Conflict, "allowed: received"},
		{"after completion", Move{From: Completed, To: InProgress, By: Owner, HasOutput: true}, Conflict, "nothing moves it"},
		{"requester after acceptance", Move{From: Accepted, To: Cancelled, By: Requester}, Conflict, "no move is allowed"},
		{"owner cancelling after acceptance", Move{From: Accepted, To: Cancelled, By: Owner}, Conflict, "no move from accepted to cancelled"},
		{"withdrawal without statusReason", Move{From: InProgress, To: Cancelled, By: ConsentWithdrawn}, Unprocessable, "statusReason"},
		{"withdrawal completing", Move{From: InProgress, To: Completed, By: ConsentWithdrawn, HasOutput: true}, Conflict, "allowed: cancelled"},
		{"unknown current status", Move{From: "draft", To: Requested, By: Owner}, Conflict, "not a referral status"},
		// The missing element is only judged for a move that is allowed.
		{"reject by requester without reason", Move{From: Received, To: Rejected, By: Requester}, Conflict, "only the owner"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Decide(c.m)
			if v.Code != c.want || !strings.Contains(v.Reason, c.says) {
				t.Fatalf("Decide(%+v) = %d %q, want %d containing %q", c.m, v.Code, v.Reason, c.want, c.says)
			}
		})
	}
}

// TestBusinessStatus checks every referral status has its BSeR code, and
// the codes of the decisions differ.
func TestBusinessStatus(t *testing.T) {
	want := map[Status]string{Requested: "2.0", Received: "2.0", Accepted: "3.0", Rejected: "4.0", InProgress: "5.x", Cancelled: "6.0", Completed: "7.0"}
	for _, s := range Statuses {
		bs, ok := BusinessStatusOf(s)
		if !ok || bs.Code != want[s] || bs.Display == "" {
			t.Errorf("%s: %+v %v, want code %s", s, bs, ok, want[s])
		}
	}
	if _, ok := BusinessStatusOf("draft"); ok {
		t.Error("draft has a business status")
	}
}

// TestWithdrawal checks the move that closes a referral on consent
// withdrawal (docs/design/security.md RFL-6): cancelled with statusReason
// from every open status, nothing from a closed one.
func TestWithdrawal(t *testing.T) {
	for _, from := range Statuses {
		m, ok := Withdrawal(from)
		open := !Terminal(from)
		if ok != open {
			t.Errorf("Withdrawal(%s) ok = %v, want %v", from, ok, open)
			continue
		}
		if ok && (m.To != Cancelled || m.By != ConsentWithdrawn || !m.HasStatusReason || Decide(m).Code != Allowed) {
			t.Errorf("Withdrawal(%s) = %+v", from, m)
		}
	}
	if _, ok := Withdrawal("draft"); ok {
		t.Error("Withdrawal(draft) is a move")
	}
}
