package mapping

import (
	"strings"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketabridge/ketabridge/conformance/fhirjson"
	"github.com/ketabridge/ketabridge/mapping/codes"
)

// Metadata of the project's implementation guide and every definition in it.
const (
	// IGVersion is the business version of every definition of the guide.
	IGVersion = "1.0.0"
	// IGPackageID is the guide's package id.
	IGPackageID = "org.ketabridge.fhir"
	publisher   = "KetaBridge"
)

// Definitions returns the project's implementation guide: the conformance
// resources the mapped output relies on, generated from the tables of
// package codes, in a stable order: the CodeSystems of local codes
// (ketabridge, ketabridge-scales), a ValueSet per group of local codes
// (codes.LocalGroups) and of the scale codes, a StructureDefinition per
// extension (codes.Extensions, with differential and snapshot), and the
// ImplementationGuide listing them all. Every canonical URL is fixed under
// codes.CanonicalBase; each id is the last segment of its URL.
//
// These are the resources published as files in conformance/ig (a test
// keeps the files equal to this output) and served by the gateway.
// Definitions is pure and deterministic.
func Definitions() ([]Output, error) {
	var res []any
	res = append(res,
		codeSystem("ketabridge", "KetaBridgeCodes", "KetaBridge local codes",
			"Local codes of KetaBridge that no standard terminology covers: session types and the no-show reason, "+
				"Spravato REMS monitoring questions, C-SSRS risk levels (a translation of the LOINC answers), adverse "+
				"effects and actions taken, assessment timing, course phases, antidepressant trial outcomes and drug "+
				"classes, consent data classes.",
			codes.LocalConcepts()),
		codeSystem("ketabridge-scales", "KetaBridgeScales", "KetaBridge assessment scales",
			"Scores of assessment scales used in ketamine therapy that have no LOINC code "+
				"(MADRS, CADSS, MOAA/S totals and item scores of PCL-5, MADRS and CADSS).",
			codes.ScaleConcepts()),
	)
	for _, g := range codes.LocalGroups() {
		res = append(res, valueSet(g.ID, g.Title, g.Description, codes.Local, g.Codes))
	}
	var scales []codes.Code
	for _, c := range codes.ScaleConcepts() {
		scales = append(scales, codes.Code{System: codes.Scales, Code: c.Code, Display: c.Display})
	}
	res = append(res, valueSet("ketabridge-scales", "KetaBridge assessment scales",
		"Every code of the ketabridge-scales CodeSystem.", codes.Scales, scales))
	for _, x := range codes.Extensions {
		res = append(res, extensionDefinition(x))
	}
	res = append(res, searchParameters()...)
	res = append(res, operationDefinitions()...)
	res = append(res, implementationGuide(res))

	out := make([]Output, len(res))
	for i, r := range res {
		body, err := fhirjson.Marshal(r)
		if err != nil {
			return nil, err
		}
		typ, id := typeAndID(r)
		out[i] = Output{Type: typ, ID: id, Resource: r, Body: body}
	}
	return out, nil
}

// searchParameters are the SearchParameters of the search parameters the
// gateway adds beyond R4 and US Core. It has none yet: every parameter it
// serves is an R4 or US Core one (fhir/search names their canonical
// definitions). A parameter of its own goes here, with its canonical under
// codes.CanonicalBase + "/SearchParameter/".
func searchParameters() []any { return nil }

// operationDefinitions are the OperationDefinitions of the operations the
// gateway adds ($everything is the standard Patient operation,
// http://hl7.org/fhir/OperationDefinition/Patient-everything, and needs no
// definition of the project's): the prior-authorization operations, with
// canonicals under OperationBase.
func operationDefinitions() []any { return priorAuthOperations() }

// typeAndID returns the resource type and id of a definition resource.
func typeAndID(r any) (string, string) {
	switch v := r.(type) {
	case *r4.CodeSystem:
		return "CodeSystem", *v.Id
	case *r4.ValueSet:
		return "ValueSet", *v.Id
	case *r4.StructureDefinition:
		return "StructureDefinition", *v.Id
	case *r4.ImplementationGuide:
		return "ImplementationGuide", *v.Id
	case *r4.OperationDefinition:
		return "OperationDefinition", *v.Id
	}
	panic("mapping: unknown definition type") // static input: a bug, caught by tests
}

func defMeta() *r4.Meta { return &r4.Meta{Source: ptr(codes.CanonicalBase)} }

func codeSystem(id, name, title, desc string, concepts []codes.Concept) *r4.CodeSystem {
	cs := make([]r4.CodeSystemConcept, len(concepts))
	for i, c := range concepts {
		cs[i] = r4.CodeSystemConcept{Code: c.Code, Display: str(c.Display), Definition: str(c.Definition)}
	}
	return &r4.CodeSystem{
		Id:            ptr(id),
		Meta:          defMeta(),
		Url:           ptr(codes.CanonicalBase + "/CodeSystem/" + id),
		Version:       ptr(IGVersion),
		Name:          ptr(name),
		Title:         ptr(title),
		Status:        r4.PublicationStatusActive,
		Experimental:  ptr(false),
		Publisher:     ptr(publisher),
		Description:   ptr(desc),
		CaseSensitive: ptr(true),
		Content:       r4.CodeSystemContentModeComplete,
		Count:         ptr(len(cs)),
		Concept:       cs,
	}
}

func valueSet(id, title, desc, system string, cs []codes.Code) *r4.ValueSet {
	concepts := make([]r4.ValueSetComposeIncludeConcept, len(cs))
	for i, c := range cs {
		concepts[i] = r4.ValueSetComposeIncludeConcept{Code: c.Code, Display: str(c.Display)}
	}
	return &r4.ValueSet{
		Id:           ptr(id),
		Meta:         defMeta(),
		Url:          ptr(codes.ValueSetBase + id),
		Version:      ptr(IGVersion),
		Name:         ptr(computableName(id)),
		Title:        ptr(title),
		Status:       r4.PublicationStatusActive,
		Experimental: ptr(false),
		Publisher:    ptr(publisher),
		Description:  ptr(desc),
		Compose: &r4.ValueSetCompose{Include: []r4.ValueSetComposeInclude{{
			System: ptr(system), Concept: concepts,
		}}},
	}
}

// computableName turns an id like ketabridge-adverse-event-action into
// KetabridgeAdverseEventAction.
func computableName(id string) string {
	var b strings.Builder
	for _, part := range strings.Split(id, "-") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// The R4 base definitions of Extension's elements (extensibility.html,
// StructureDefinition/Extension), from which each extension's snapshot is
// derived.
const (
	ele1Expr   = "hasValue() or (children().count() > id.count())"
	ext1Expr   = "extension.exists() != value.exists()"
	elementSD  = "http://hl7.org/fhir/StructureDefinition/Element"
	extSD      = "http://hl7.org/fhir/StructureDefinition/Extension"
	fhirString = "http://hl7.org/fhirpath/System.String"
)

func ele1() r4.ElementDefinitionConstraint {
	return r4.ElementDefinitionConstraint{Key: "ele-1", Severity: r4.ConstraintSeverityError,
		Human: "All FHIR elements must have a @value or children", Expression: ptr(ele1Expr),
		Xpath: ptr("@value|f:*|h:div"), Source: ptr(elementSD)}
}

func ext1() r4.ElementDefinitionConstraint {
	return r4.ElementDefinitionConstraint{Key: "ext-1", Severity: r4.ConstraintSeverityError,
		Human: "Must have either extensions or value[x], not both", Expression: ptr(ext1Expr),
		Xpath:  ptr("exists(f:extension)!=exists(f:*[starts-with(local-name(.), \"value\")])"),
		Source: ptr(extSD)}
}

func base(path string, min int, max string) *r4.ElementDefinitionBase {
	return &r4.ElementDefinitionBase{Path: path, Min: min, Max: max}
}

// systemString is the type of Element.id and Extension.url in R4
// StructureDefinitions: a FHIRPath System.String. (R4 marks it with the
// structuredefinition-fhir-type extension, whose context is the code
// primitive; the model library cannot emit primitive extensions, so the
// informative marker is left out.)
func systemString() []r4.ElementDefinitionType {
	return []r4.ElementDefinitionType{{Code: fhirString}}
}

// extensionDefinition is the StructureDefinition of a simple extension: kind
// complex-type, type Extension, derivation constraint on the base Extension,
// one element context, no sub-extensions, a fixed url and exactly one value
// of the spec's type. The differential states what the extension changes;
// the snapshot is the base Extension with those changes applied.
func extensionDefinition(x codes.ExtensionSpec) *r4.StructureDefinition {
	id := strings.TrimPrefix(x.URL, codes.ExtensionBase)
	rootDef := x.Definition + " " + x.Why
	var binding *r4.ElementDefinitionBinding
	if x.ValueSet != "" {
		strength := r4.BindingStrengthRequired
		if x.Strength == "extensible" {
			strength = r4.BindingStrengthExtensible
		}
		binding = &r4.ElementDefinitionBinding{Strength: strength, ValueSet: ptr(x.ValueSet)}
	}
	valueType := []r4.ElementDefinitionType{{Code: x.ValueType}}

	diff := []r4.ElementDefinition{
		{Id: ptr("Extension"), Path: "Extension", Short: ptr(x.Short), Definition: ptr(rootDef),
			Min: ptr(0), Max: ptr("1")},
		{Id: ptr("Extension.extension"), Path: "Extension.extension", Max: ptr("0")},
		{Id: ptr("Extension.url"), Path: "Extension.url", FixedUri: ptr(x.URL)},
		{Id: ptr("Extension.value[x]"), Path: "Extension.value[x]", Min: ptr(1), Type: valueType, Binding: binding},
	}
	snap := []r4.ElementDefinition{
		{Id: ptr("Extension"), Path: "Extension", Short: ptr(x.Short), Definition: ptr(rootDef),
			Min: ptr(0), Max: ptr("1"), Base: base("Extension", 0, "*"), Condition: []string{"ele-1"},
			Constraint: []r4.ElementDefinitionConstraint{ele1(), ext1()}, IsModifier: ptr(false)},
		{Id: ptr("Extension.id"), Path: "Extension.id",
			Representation: []r4.PropertyRepresentation{r4.PropertyRepresentationXmlAttr},
			Short:          ptr("Unique id for inter-element referencing"),
			Definition:     ptr("Unique id for the element within a resource (for internal references). This may be any string value that does not contain spaces."),
			Min:            ptr(0), Max: ptr("1"), Base: base("Element.id", 0, "1"), Type: systemString(),
			IsModifier: ptr(false), IsSummary: ptr(false)},
		{Id: ptr("Extension.extension"), Path: "Extension.extension",
			Slicing: &r4.ElementDefinitionSlicing{
				Discriminator: []r4.ElementDefinitionSlicingDiscriminator{{Type: r4.DiscriminatorTypeValue, Path: "url"}},
				Description:   ptr("Extensions are always sliced by (at least) url"),
				Rules:         r4.SlicingRulesOpen,
			},
			Short:      ptr("Additional content defined by implementations"),
			Definition: ptr("May be used to represent additional information that is not part of the basic definition of the element."),
			Min:        ptr(0), Max: ptr("0"), Base: base("Element.extension", 0, "*"),
			Type:       []r4.ElementDefinitionType{{Code: "Extension"}},
			Constraint: []r4.ElementDefinitionConstraint{ele1(), ext1()}, IsModifier: ptr(false), IsSummary: ptr(false)},
		{Id: ptr("Extension.url"), Path: "Extension.url",
			Representation: []r4.PropertyRepresentation{r4.PropertyRepresentationXmlAttr},
			Short:          ptr("identifies the meaning of the extension"),
			Definition:     ptr("Source of the definition for the extension code - a logical name or a URL."),
			Min:            ptr(1), Max: ptr("1"), Base: base("Extension.url", 1, "1"), Type: systemString(),
			FixedUri: ptr(x.URL), IsModifier: ptr(false), IsSummary: ptr(false)},
		{Id: ptr("Extension.value[x]"), Path: "Extension.value[x]",
			Short:      ptr("Value of extension"),
			Definition: ptr("Value of extension - must be one of a constrained set of the data types (see [Extensibility](http://hl7.org/fhir/R4/extensibility.html) for a list)."),
			Min:        ptr(1), Max: ptr("1"), Base: base("Extension.value[x]", 0, "1"), Type: valueType,
			Constraint: []r4.ElementDefinitionConstraint{ele1()}, IsModifier: ptr(false), IsSummary: ptr(false),
			Binding: binding},
	}
	return &r4.StructureDefinition{
		Id:           ptr(id),
		Meta:         defMeta(),
		Url:          x.URL,
		Version:      ptr(IGVersion),
		Name:         x.Name,
		Title:        ptr(x.Title),
		Status:       r4.PublicationStatusActive,
		Experimental: ptr(false),
		Publisher:    ptr(publisher),
		Description:  ptr(x.Definition),
		Purpose:      ptr(x.Why),
		FhirVersion:  ptr(r4.FHIRVersion4_0_1),
		Kind:         r4.StructureDefinitionKindComplexType,
		Abstract:     false,
		Context: []r4.StructureDefinitionContext{{
			Type: r4.ExtensionContextTypeElement, Expression: x.Context,
		}},
		Type:           "Extension",
		BaseDefinition: ptr(extSD),
		Derivation:     ptr(r4.TypeDerivationRuleConstraint),
		Snapshot:       &r4.StructureDefinitionSnapshot{Element: snap},
		Differential:   &r4.StructureDefinitionDifferential{Element: diff},
	}
}

// implementationGuide lists the guide's resources (defs, in their order).
func implementationGuide(defs []any) *r4.ImplementationGuide {
	entries := make([]r4.ImplementationGuideDefinitionResource, len(defs))
	for i, d := range defs {
		typ, id := typeAndID(d)
		var name, desc *string
		switch v := d.(type) {
		case *r4.CodeSystem:
			name, desc = v.Title, v.Description
		case *r4.ValueSet:
			name, desc = v.Title, v.Description
		case *r4.StructureDefinition:
			name, desc = v.Title, v.Description
		case *r4.OperationDefinition:
			name, desc = v.Title, v.Description
		}
		entries[i] = r4.ImplementationGuideDefinitionResource{
			Reference: ref(typ, id), Name: name, Description: desc, ExampleBoolean: ptr(false),
		}
	}
	return &r4.ImplementationGuide{
		Id:           ptr("ketabridge"),
		Meta:         defMeta(),
		Url:          codes.IGURL,
		Version:      ptr(IGVersion),
		Name:         "KetaBridge",
		Title:        ptr("KetaBridge FHIR R4 implementation guide"),
		Status:       r4.PublicationStatusActive,
		Experimental: ptr(false),
		Publisher:    ptr(publisher),
		Description: ptr("The definitions KetaBridge, a FHIR R4 gateway for ketamine-therapy clinics, publishes for " +
			"what it emits beyond US Core 6.1.0: its local code systems and value sets and the few extensions no " +
			"standard element covers. docs/fhir-mapping.md in the KetaBridge repository is the narrative."),
		PackageId:   IGPackageID,
		FhirVersion: []r4.FHIRVersion{r4.FHIRVersion4_0_1},
		DependsOn: []r4.ImplementationGuideDependsOn{{
			Uri:       "http://hl7.org/fhir/us/core/ImplementationGuide/hl7.fhir.us.core",
			PackageId: ptr("hl7.fhir.us.core"),
			Version:   ptr("6.1.0"),
		}},
		Definition: &r4.ImplementationGuideDefinition{Resource: entries},
	}
}
