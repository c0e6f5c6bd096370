package priorauth

import (
	"errors"
	"testing"
	"time"

	"github.com/ketabridge/ketabridge/mapping/clinic"
)

func (s *scenario) answer(id, outcome, created string, approved int) *clinic.PriorAuthResponse {
	req := 16
	r := &clinic.PriorAuthResponse{Header: clinic.Header{Kind: clinic.KindPriorAuthResponse, ID: id}, PatientID: "pat-1",
		CourseID: "course-1", PayerID: "org-payer", Outcome: outcome, Created: created, RequestedSessions: &req}
	if outcome == "approved" || outcome == "partial" {
		r.ApprovedSessions, r.PreAuthRef, r.Start, r.End = &approved, "BHP-"+id, dayStr(0), dayStr(179)
	}
	return r
}

// TestAuthorizationStatus: sessions used against approved units, days left
// and renewal due, from the latest payer answer for the course.
func TestAuthorizationStatus(t *testing.T) {
	day := func(offset int) time.Time { return courseStart.AddDate(0, 0, offset) }
	cases := []struct {
		name       string
		answers    func(s *scenario) []clinic.Record
		today      time.Time
		want       AuthStatus
		wantNoneOK bool
	}{
		{"approved, early", func(s *scenario) []clinic.Record {
			return []clinic.Record{s.answer("par-1", "approved", at(-3, "14:00"), 16)}
		}, day(7), AuthStatus{Outcome: "approved", Requested: 16, Approved: 16, Used: 2, Remaining: 14, DaysLeft: 172}, false},
		{"14 days left is due", func(s *scenario) []clinic.Record {
			return []clinic.Record{s.answer("par-1", "approved", at(-3, "14:00"), 16)}
		}, day(165), AuthStatus{Outcome: "approved", Requested: 16, Approved: 16, Used: 2, Remaining: 14, DaysLeft: 14, RenewalDue: true}, false},
		{"partial, 6 of 8 left", func(s *scenario) []clinic.Record {
			return []clinic.Record{s.answer("par-1", "partial", at(-3, "14:00"), 8)}
		}, day(7), AuthStatus{Outcome: "partial", Requested: 16, Approved: 8, Used: 2, Remaining: 6, DaysLeft: 172}, false},
		{"all used", func(s *scenario) []clinic.Record {
			return []clinic.Record{s.answer("par-1", "partial", at(-3, "14:00"), 2)}
		}, day(7), AuthStatus{Outcome: "partial", Requested: 16, Approved: 2, Used: 2, Remaining: 0, DaysLeft: 172, RenewalDue: true}, false},
		{"denied", func(s *scenario) []clinic.Record {
			return []clinic.Record{s.answer("par-1", "denied", at(-3, "14:00"), 0)}
		}, day(7), AuthStatus{Outcome: "denied", Requested: 16}, false},
		{"the latest answer wins", func(s *scenario) []clinic.Record {
			return []clinic.Record{s.answer("par-2", "approved", at(-1, "09:00"), 16), s.answer("par-1", "pended", at(-5, "09:00"), 0)}
		}, day(7), AuthStatus{Outcome: "approved", Requested: 16, Approved: 16, Used: 2, Remaining: 14, DaysLeft: 172}, false},
		{"no answer", func(s *scenario) []clinic.Record { return nil }, day(7), AuthStatus{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := esketamineScenario()
			s.extra = append(s.extra, tc.answers(s)...)
			rs, c := s.records(t)
			st, err := AuthorizationStatus(rs, c, tc.today)
			if tc.wantNoneOK {
				if !errors.Is(err, ErrNoAnswer) {
					t.Fatalf("err %v, want ErrNoAnswer", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := *st
			got.ClaimResponse = ""
			if got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
			if _, err := StatusParameters(st, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}
