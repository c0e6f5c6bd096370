package postgres

// SetAnalyzeMinRows lowers the ANALYZE threshold for a test.
func SetAnalyzeMinRows(n int64) (restore func()) {
	old := analyzeMinRows
	analyzeMinRows = n
	return func() { analyzeMinRows = old }
}

// MigrationFiles are the embedded migrations.
var MigrationFiles = migrationFiles
