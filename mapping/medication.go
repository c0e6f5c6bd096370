package mapping

import (
	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/mapping/clinic"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// drugCodes are the codings of a drug: the RxNorm clinical drug when the
// product is one whose code is known (codes.ClinicalDrugs), then the drug's
// RxNorm codes (codes.Drugs), then the NDC when one is given (the
// administration's, else the product's).
func drugCodes(drug string, product *clinic.Product, ndc string) []codes.Code {
	var out []codes.Code
	if product != nil {
		if scd, ok := codes.ClinicalDrugs[codes.ProductKey{Drug: drug, Form: product.Form, StrengthMg: product.StrengthMg}]; ok {
			out = append(out, scd)
		}
		if ndc == "" {
			ndc = product.NDC
		}
	}
	out = append(out, codes.Drugs[drug]...)
	if ndc != "" {
		out = append(out, codeOf(codes.NDC, ndc, ""))
	}
	return out
}

// productText names a drug product in plain words, e.g.
// "ketamine 100 mg/mL injectable solution" or "compounded ketamine 100 mg
// lozenge"; without a product it is the drug's text.
func productText(drug string, p *clinic.Product) string {
	if p == nil {
		return codes.DrugText[drug]
	}
	t := codes.DrugText[drug] + " " + fmtNum(p.StrengthMg) + " mg"
	switch p.Form {
	case "injection-solution":
		t += "/mL injectable solution"
	case "nasal-spray":
		t += " nasal spray device"
	case "lozenge":
		t += " lozenge"
	}
	if p.Compounded {
		t = "compounded " + t
	}
	return t
}

// medication builds a Medication of a drug: code (drugCodes), and with a
// product its form (SNOMED CT where confirmed, else text) and the ingredient
// with its strength per unit of the form; a lot number goes to
// batch.lotNumber (the Spravato REMS asks for it).
func (m *Mapper) medication(id, drug string, product *clinic.Product, ndc, lot string) *r4.Medication {
	res := &r4.Medication{
		Id:     ptr(id),
		Meta:   m.meta("", unlabelled),
		Code:   ccp(m.cc(productText(drug, product), drugCodes(drug, product, ndc)...)),
		Status: ptr("active"),
	}
	if product != nil {
		if f, ok := codes.Forms[product.Form]; ok {
			res.Form = ccp(m.cc(f.Display, f))
		}
		unit := codes.FormUnits[product.Form]
		ing := codes.Ingredients[drug]
		res.Ingredient = []r4.MedicationIngredient{{
			ItemCodeableConcept: m.cc(ing.Display, ing),
			IsActive:            ptr(true),
			Strength: &r4.Ratio{
				Numerator:   qty(product.StrengthMg, codes.UnitMg),
				Denominator: qty(1, unit),
			},
		}}
	}
	if lot != "" {
		res.Batch = &r4.MedicationBatch{LotNumber: ptr(lot)}
	}
	return res
}

// sessionCourse is the course of a session, when it resolves.
func (e *emitter) sessionCourse(s *clinic.Session) *clinic.Course {
	r, ok := e.related(clinic.KindCourse, s.CourseID)
	if !ok {
		return nil
	}
	c, _ := r.(*clinic.Course)
	return c
}

// sessionProtocol is the protocol of a session's course, when it resolves.
func (e *emitter) sessionProtocol(s *clinic.Session) *clinic.Protocol {
	c := e.sessionCourse(s)
	if c == nil {
		return nil
	}
	r, ok := e.related(clinic.KindProtocol, c.ProtocolID)
	if !ok {
		return nil
	}
	p, _ := r.(*clinic.Protocol)
	return p
}
