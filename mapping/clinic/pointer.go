package clinic

import "reflect"

// asPointer returns r as a pointer to its kind's struct, so code can switch on
// pointer types only; a record passed by value is copied.
func asPointer(r Record) Record {
	switch v := r.(type) {
	case Patient:
		return &v
	case Practitioner:
		return &v
	case Organization:
		return &v
	case Location:
		return &v
	case Protocol:
		return &v
	case Course:
		return &v
	case Diagnosis:
		return &v
	case Session:
		return &v
	case Coverage:
		return &v
	case Consent:
		return &v
	case AntidepressantTrial:
		return &v
	case PriorAuthResponse:
		return &v
	case Referral:
		return &v
	}
	if v := reflect.ValueOf(r); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil // a typed nil pointer is no record
	}
	return r
}
