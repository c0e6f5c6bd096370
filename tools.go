//go:build tools

// Package tools pins the modules the project's packages are about to use, so
// go.mod is settled before they are written.
package tools

import (
	_ "github.com/google/uuid"
	_ "github.com/invopop/jsonschema"
	_ "github.com/labstack/echo/v4"
	_ "github.com/samply/golang-fhir-models/fhir-models/fhir"
	_ "github.com/schollz/progressbar/v3"
	_ "golang.org/x/term"
	_ "modernc.org/sqlite"
)
