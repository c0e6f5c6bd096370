package synth

import "github.com/ketabridge/ketabridge/mapping/clinic"

// Clinic record ids of the organizations every generated data set has: the
// clinic, two payers (type payer) and two partner clinics (type partner).
const (
	OrgClinic           = "org-lakeside"
	OrgPayerBlueHeron   = "org-payer-blueheron"
	OrgPayerCascade     = "org-payer-cascade"
	OrgPartnerRiverbend = "org-partner-riverbend"
	OrgPartnerNorthgate = "org-partner-northgate"
)

// Ids of the other shared reference records.
const (
	orgClinic    = OrgClinic
	locInfusion  = "loc-infusion"
	locSpravato  = "loc-spravato"
	protoIV      = "proto-iv-ketamine"
	protoSpr     = "proto-spravato"
	protoIM      = "proto-im-ptsd"
	protoLozenge = "proto-sl-lozenge"
	pracPsych1   = "prac-psych-okafor"
	pracPsych2   = "prac-psych-brandt"
	pracNP       = "prac-np-castillo"
	pracRN1      = "prac-rn-lind"
	pracRN2      = "prac-rn-abara"
	pracCRNA     = "prac-crna-holm"
)

type payer struct {
	id, name, memberPrefix string
	plans                  []string
	// naic and payerID are made-up NAIC company codes and claims payer ids.
	naic, payerID string
}

var payers = []payer{
	{OrgPayerBlueHeron, "Blue Heron Health Plan", "BHP", []string{"Blue Heron PPO Gold", "Blue Heron HMO Silver"}, "98101", "BHP01"},
	{OrgPayerCascade, "Cascade Mutual Insurance", "CMI", []string{"Cascade Choice PPO", "Cascade Essential EPO", "Cascade Medicare Advantage HMO"}, "98102", "CMI22"},
}

// planTypes is the payer type (clinic.Coverage.PayerType) of each plan.
var planTypes = map[string]string{
	"Blue Heron PPO Gold": "commercial-ppo", "Blue Heron HMO Silver": "commercial-hmo",
	"Cascade Choice PPO": "commercial-ppo", "Cascade Essential EPO": "commercial-epo",
	"Cascade Medicare Advantage HMO": "medicare-hmo",
}

// partners are the partner clinics patients are referred to and from.
var partners = []struct{ id, name, npi, phone, email string }{
	{OrgPartnerRiverbend, "Riverbend Behavioral Health", npi("198765432"), "+1-555-0300", "referrals@riverbend.example"},
	{OrgPartnerNorthgate, "Northgate Psychiatry Associates", npi("165432109"), "+1-555-0310", "intake@northgate.example"},
}

var prescribers = []string{pracPsych1, pracPsych2, pracNP}

var (
	addressClinic = &clinic.Address{Lines: []string{"100 Harbor Way", "Suite 200"}, City: "Springfield", State: "IL", PostalCode: "62701", Country: "US"}
	addressSuite  = &clinic.Address{Lines: []string{"100 Harbor Way", "Suite 210"}, City: "Springfield", State: "IL", PostalCode: "62701", Country: "US"}
)

func f(v float64) *float64 { return &v }
func i(v int) *int         { return &v }

// npi makes a valid NPI from nine digits (CMS Luhn check digit).
func npi(nine string) string { return nine + string(clinic.NPICheckDigit(nine)) }

// referenceRecords are the organizations, practitioners, locations and
// protocols every generated data set shares, in dependency order.
func referenceRecords() []clinic.Record {
	hdr := func(k clinic.Kind, id string) clinic.Header { return clinic.Header{Kind: k, ID: id} }
	recs := []clinic.Record{
		&clinic.Organization{Header: hdr(clinic.KindOrganization, orgClinic), Name: "Lakeside Ketamine Clinic", Type: "clinic",
			NPI: npi("123456789"), Contact: &clinic.Contact{Phone: "+1-555-0100", Email: "frontdesk@lakeside.example", Address: addressClinic}},
	}
	for n, p := range payers {
		recs = append(recs, &clinic.Organization{Header: hdr(clinic.KindOrganization, p.id), Name: p.name, Type: "payer",
			Contact: &clinic.Contact{Phone: "+1-555-02" + string(rune('1'+n)) + "0"}, NAIC: p.naic, PayerID: p.payerID})
	}
	for _, p := range partners {
		recs = append(recs, &clinic.Organization{Header: hdr(clinic.KindOrganization, p.id), Name: p.name, Type: "partner",
			NPI: p.npi, Contact: &clinic.Contact{Phone: p.phone, Email: p.email}})
	}
	recs = append(recs,
		&clinic.Practitioner{Header: hdr(clinic.KindPractitioner, pracPsych1), NPI: npi("145678901"),
			Name: clinic.HumanName{Family: "Okafor", Given: []string{"Adaeze"}, Prefix: []string{"Dr."}}, Qualification: "MD", Specialty: "2084P0800X",
			Contact: &clinic.Contact{Phone: "+1-555-0110", Email: "a.okafor@lakeside.example"}},
		&clinic.Practitioner{Header: hdr(clinic.KindPractitioner, pracPsych2), NPI: npi("176543210"),
			Name: clinic.HumanName{Family: "Brandt", Given: []string{"Tobias"}, Prefix: []string{"Dr."}}, Qualification: "DO", Specialty: "2084P0800X"},
		&clinic.Practitioner{Header: hdr(clinic.KindPractitioner, pracNP), NPI: npi("112233445"),
			Name: clinic.HumanName{Family: "Castillo", Given: []string{"Renata"}}, Qualification: "PMHNP", Specialty: "363LP0808X"},
		&clinic.Practitioner{Header: hdr(clinic.KindPractitioner, pracRN1), Name: clinic.HumanName{Family: "Lind", Given: []string{"Maren"}}, Qualification: "RN", Specialty: "163WP0808X"},
		&clinic.Practitioner{Header: hdr(clinic.KindPractitioner, pracRN2), Name: clinic.HumanName{Family: "Abara", Given: []string{"Chidi"}}, Qualification: "RN", Specialty: "163W00000X"},
		&clinic.Practitioner{Header: hdr(clinic.KindPractitioner, pracCRNA), NPI: npi("133557799"),
			Name: clinic.HumanName{Family: "Holm", Given: []string{"Sigrid"}}, Qualification: "CRNA", Specialty: "367500000X"},
		&clinic.Location{Header: hdr(clinic.KindLocation, locInfusion), Name: "Infusion Suite", OrganizationID: orgClinic,
			Contact: &clinic.Contact{Phone: "+1-555-0101", Address: addressClinic}},
		&clinic.Location{Header: hdr(clinic.KindLocation, locSpravato), Name: "Spravato Monitoring Rooms", OrganizationID: orgClinic,
			REMSCertified: true, REMSSettingID: "HCS-4471902", Contact: &clinic.Contact{Phone: "+1-555-0102", Address: addressSuite}},
		&clinic.Protocol{Header: hdr(clinic.KindProtocol, protoIV), Name: "IV ketamine 0.5 mg/kg over 40 min: induction and maintenance",
			Drug: "ketamine", Route: "iv", Dose: clinic.DoseRule{Rule: "mg_per_kg", MgPerKg: f(0.5), MinMgPerKg: f(0.4), MaxMgPerKg: f(0.75)},
			Product:         &clinic.Product{Form: "injection-solution", StrengthMg: 100, NDC: "0409-2051-05"},
			InfusionMinutes: 40, Induction: clinic.Schedule{Sessions: 6, Frequency: 3, PeriodDays: 7},
			Maintenance: &clinic.Schedule{Sessions: 24, Frequency: 1, PeriodDays: 28},
			Monitoring: clinic.Monitoring{VitalsIntervalMinutes: 10, ObservationMinutes: 40, BPBeforeDose: true, PulseOximetry: true,
				HoldAboveSystolic: 160, HoldAboveDiastolic: 100},
			Indications: []string{"F33.2", "F33.1", "F33.9", "F32.2", "F32.1", "F32.A", "F43.10", "F43.12", "F41.1"}, OrganizationID: orgClinic, Status: "active"},
		&clinic.Protocol{Header: hdr(clinic.KindProtocol, protoSpr), Name: "Spravato (esketamine) 56/84 mg: twice weekly 4 weeks, weekly 4 weeks, then every 1-2 weeks",
			Drug: "esketamine", Route: "intranasal", Dose: clinic.DoseRule{Rule: "fixed_mg", Mg: f(56), MinMg: f(56), MaxMg: f(84)},
			Product:   &clinic.Product{Form: "nasal-spray", StrengthMg: 28},
			Induction: clinic.Schedule{Sessions: 8, Frequency: 2, PeriodDays: 7}, Maintenance: &clinic.Schedule{Sessions: 24, Frequency: 1, PeriodDays: 7},
			Monitoring: clinic.Monitoring{ObservationMinutes: 120, BPBeforeDose: true, BPAfterMinutes: 40, PulseOximetry: true, REMS: true,
				HoldAboveSystolic: 140, HoldAboveDiastolic: 90},
			Indications: []string{"F33.2", "F33.1", "F33.9", "F32.2", "F32.1", "F32.A"}, OrganizationID: orgClinic, Status: "active"},
		&clinic.Protocol{Header: hdr(clinic.KindProtocol, protoIM), Name: "IM ketamine for PTSD: 0.5-0.75 mg/kg twice weekly, then every 2-4 weeks",
			Drug: "ketamine", Route: "im", Dose: clinic.DoseRule{Rule: "mg_per_kg", MgPerKg: f(0.5), MinMgPerKg: f(0.5), MaxMgPerKg: f(1.0)},
			Product:   &clinic.Product{Form: "injection-solution", StrengthMg: 100},
			Induction: clinic.Schedule{Sessions: 6, Frequency: 2, PeriodDays: 7}, Maintenance: &clinic.Schedule{Sessions: 24, Frequency: 1, PeriodDays: 21},
			Monitoring: clinic.Monitoring{VitalsIntervalMinutes: 15, ObservationMinutes: 60, BPBeforeDose: true, PulseOximetry: true,
				HoldAboveSystolic: 160, HoldAboveDiastolic: 100},
			Indications: []string{"F43.10", "F43.11", "F43.12"}, OrganizationID: orgClinic, Status: "active"},
		&clinic.Protocol{Header: hdr(clinic.KindProtocol, protoLozenge), Name: "Sublingual ketamine lozenge 100-300 mg, supervised",
			Drug: "ketamine", Route: "sublingual", Dose: clinic.DoseRule{Rule: "fixed_mg", Mg: f(100), MinMg: f(50), MaxMg: f(300)},
			Product:   &clinic.Product{Form: "lozenge", StrengthMg: 50, Compounded: true},
			Induction: clinic.Schedule{Sessions: 8, Frequency: 2, PeriodDays: 7}, Maintenance: &clinic.Schedule{Sessions: 24, Frequency: 1, PeriodDays: 14},
			Monitoring: clinic.Monitoring{VitalsIntervalMinutes: 15, ObservationMinutes: 90, BPBeforeDose: true, PulseOximetry: true,
				HoldAboveSystolic: 160, HoldAboveDiastolic: 100},
			Indications: []string{"F41.1", "F33.1", "F32.1", "F33.9"}, OrganizationID: orgClinic, Status: "active"},
	)
	return recs
}

// Name lists for synthetic patients (common US names; no real people).
var (
	givenFemale = []string{"Olivia", "Emma", "Ava", "Sophia", "Mia", "Amelia", "Harper", "Evelyn", "Abigail", "Emily",
		"Grace", "Chloe", "Camila", "Aaliyah", "Maria", "Priya", "Mei", "Fatima", "Hannah", "Rosa", "Linda", "Susan", "Karen", "Nadia"}
	givenMale = []string{"Liam", "Noah", "Oliver", "Elijah", "James", "William", "Benjamin", "Lucas", "Henry", "Daniel",
		"Mateo", "Jamal", "Wei", "Arjun", "David", "Joseph", "Michael", "Robert", "Carlos", "Omar", "Thomas", "Kevin", "Andre", "Samuel"}
	givenNeutral = []string{"Jordan", "Taylor", "Alex", "Riley", "Casey", "Avery", "Quinn", "Rowan", "Sage", "Emerson"}
	families     = []string{"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
		"Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Nguyen", "Patel",
		"Kim", "Chen", "Okafor", "Kowalski", "Novak", "Larsen", "Rossi", "Cohen", "Walker", "Young", "Rivera", "Ahmed", "Singh", "Murphy"}
	streets = []string{"Maple Ave", "Oak St", "Cedar Ln", "Lincoln Blvd", "Prairie Rd", "Lakeview Dr", "Elm St", "Washington St", "Birch Ct", "Mill Rd"}
	cities  = []struct{ city, zip string }{{"Springfield", "62704"}, {"Chatham", "62629"}, {"Rochester", "62563"}, {"Sherman", "62684"}, {"Riverton", "62561"}}
)

// Antidepressants by class with RxNorm ingredient codes and daily doses (mg).
type antidepressant struct {
	drug, rxnorm, class string
	doses               []float64
}

var antidepressants = map[string][]antidepressant{
	"SSRI": {
		{"sertraline", "36437", "SSRI", []float64{100, 150, 200}},
		{"escitalopram", "321988", "SSRI", []float64{10, 20}},
		{"fluoxetine", "4493", "SSRI", []float64{20, 40, 60}},
		{"citalopram", "2556", "SSRI", []float64{20, 40}},
		{"paroxetine", "32937", "SSRI", []float64{20, 40}},
	},
	"SNRI": {
		{"venlafaxine", "39786", "SNRI", []float64{150, 225}},
		{"duloxetine", "72625", "SNRI", []float64{60, 90, 120}},
		{"desvenlafaxine", "734064", "SNRI", []float64{50, 100}},
	},
	"atypical": {
		{"bupropion", "42347", "atypical", []float64{300, 450}},
		{"mirtazapine", "15996", "atypical", []float64{30, 45}},
	},
	"TCA": {
		{"nortriptyline", "7531", "TCA", []float64{75, 100, 150}},
		{"amitriptyline", "704", "TCA", []float64{100, 150}},
	},
	"augmentation": {
		{"aripiprazole", "89013", "augmentation", []float64{2, 5, 10}},
		{"lithium", "6448", "augmentation", []float64{600, 900}},
	},
}

// diagnosis codes with display text.
type dxCode struct {
	code, text string
	weight     float64
}

var (
	mddCodes = []dxCode{
		{"F33.2", "Major depressive disorder, recurrent severe without psychotic features", 0.40},
		{"F33.1", "Major depressive disorder, recurrent, moderate", 0.25},
		{"F32.2", "Major depressive disorder, single episode, severe without psychotic features", 0.15},
		{"F32.1", "Major depressive disorder, single episode, moderate", 0.10},
		{"F33.9", "Major depressive disorder, recurrent, unspecified", 0.05},
		{"F32.A", "Depression, unspecified", 0.05},
	}
	ptsdCodes = []dxCode{
		{"F43.10", "Post-traumatic stress disorder, unspecified", 0.5},
		{"F43.12", "Post-traumatic stress disorder, chronic", 0.4},
		{"F43.11", "Post-traumatic stress disorder, acute", 0.1},
	}
	gadCodes = []dxCode{{"F41.1", "Generalized anxiety disorder", 1}}
)
