package course

import "html/template"

var funcs = template.FuncMap{
	"fmtNum": fmtNum,
	"add":    func(a, b float64) float64 { return a + b },
	"sub":    func(a, b float64) float64 { return a - b },
}
