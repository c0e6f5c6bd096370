package bench

import "testing"

// TestSampleIDs: the compact id sample gives back every path it was given,
// UUIDs and other ids alike, after replacements and swaps.
func TestSampleIDs(t *testing.T) {
	var s sampleIDs
	want := []string{}
	add := func(typ, id string) {
		s.add(typ, id)
		want = append(want, "/fhir/"+typ+"/"+id)
	}
	add("Observation", "0c6a7d0e-5d2c-5b8e-9a53-0f0b5c1f1d11")
	add("Patient", "p1")                                     // not a UUID
	add("Encounter", "0C6A7D0E-5D2C-5B8E-9A53-0F0B5C1F1D11") // not canonical: kept as given
	add("Observation", "6f1d0c3e-4b7a-5e21-9c8d-2a4f6b9e0d17")
	add("Task", "6f1d0c3e-4b7a-5e21-9c8d-2a4f6b9e0d1g")  // not hex
	add("Task", "6f1d0c3e-4b7a05e21-9c8d-2a4f6b9e0d17")  // a dash missing
	add("Task", "6f1d0c3e-4b7a-5e21-9c8d-2a4f6b9e0d170") // too long
	s.set(3, "Condition", "c-2")
	want[3] = "/fhir/Condition/c-2"
	s.set(1, "Patient", "1b4e28ba-2fa1-41d2-883f-0016d3cca427")
	want[1] = "/fhir/Patient/1b4e28ba-2fa1-41d2-883f-0016d3cca427"
	s.swap(0, 3)
	want[0], want[3] = want[3], want[0]
	s.swap(2, 1)
	want[2], want[1] = want[1], want[2]
	if s.len() != len(want) {
		t.Fatalf("len = %d, want %d", s.len(), len(want))
	}
	for i, w := range want {
		if got := s.path(i); got != w {
			t.Errorf("path(%d) = %q, want %q", i, got, w)
		}
	}
}
