// Package archtest checks the import direction of shared/DESIGN.md: cmd → server →
// api/client → services → storage/stream/visibility → mxerr; only server (and tests and
// the benchmark tool) may import the SQL implementation.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "porthole/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := map[string][]string{
		"porthole/internal/storage":    {"porthole/internal/api", "porthole/internal/rooms", "porthole/internal/syncer", "porthole/internal/live", "porthole/internal/auth"},
		"porthole/internal/stream":     {"porthole/internal/storage", "porthole/internal/api", "porthole/internal/live"},
		"porthole/internal/visibility": {"porthole/internal/"},
		"porthole/internal/mxerr":      {"porthole/internal/"},
		"porthole/internal/stateres":   {"porthole/internal/"}, // pure: events in, state out
		"porthole/internal/live":       {"porthole/internal/api", "porthole/internal/rooms", "porthole/internal/syncer", "porthole/internal/storage/sqlstore"},
		"porthole/internal/rooms":      {"porthole/internal/api", "porthole/internal/syncer", "porthole/internal/storage/sqlstore"},
		"porthole/internal/syncer":     {"porthole/internal/api", "porthole/internal/rooms", "porthole/internal/storage/sqlstore"},
		"porthole/internal/auth":       {"porthole/internal/api", "porthole/internal/rooms", "porthole/internal/syncer", "porthole/internal/storage/sqlstore", "porthole/internal/e2ee"},
		"porthole/internal/outbox":     {"porthole/internal/api", "porthole/internal/rooms", "porthole/internal/syncer", "porthole/internal/live", "porthole/internal/auth", "porthole/internal/storage/sqlstore"},
		"porthole/internal/e2ee":       {"porthole/internal/api", "porthole/internal/rooms", "porthole/internal/syncer", "porthole/internal/storage/sqlstore"},
		"porthole/internal/notify":     {"porthole/internal/api", "porthole/internal/rooms", "porthole/internal/syncer", "porthole/internal/storage/sqlstore"},
		"porthole/internal/relations":  {"porthole/internal/api", "porthole/internal/rooms", "porthole/internal/syncer", "porthole/internal/live", "porthole/internal/clientevent", "porthole/internal/storage/sqlstore"},
		"porthole/internal/reports":    {"porthole/internal/api", "porthole/internal/rooms", "porthole/internal/syncer", "porthole/internal/live", "porthole/internal/storage/sqlstore"},
		"porthole/internal/media":      {"porthole/internal/api", "porthole/internal/rooms", "porthole/internal/syncer", "porthole/internal/live", "porthole/internal/auth", "porthole/internal/storage/sqlstore"},
		"porthole/internal/push":       {"porthole/internal/storage", "porthole/internal/live", "porthole/internal/api", "porthole/internal/notify"},
		// Handlers call services, never storage.
		"porthole/internal/web":            {"porthole/internal/storage", "porthole/internal/api", "porthole/internal/live", "porthole/internal/server"},
		"porthole/internal/api/client":     {"porthole/internal/storage", "porthole/internal/server"},
		"porthole/internal/api/federation": {"porthole/internal/storage", "porthole/internal/server"},
		"porthole/internal/federation":     {"porthole/internal/api", "porthole/internal/syncer", "porthole/internal/storage/sqlstore", "porthole/internal/server"},
		"porthole/internal/netguard":       {"porthole/internal/"},
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg, imports := fields[0], fields[1:]
		for prefix, banned := range forbidden {
			if pkg != prefix && !strings.HasPrefix(pkg, prefix+"/") {
				continue
			}
			for _, imp := range imports {
				for _, b := range banned {
					if strings.HasPrefix(imp, b) && !strings.HasPrefix(imp, pkg) {
						t.Errorf("%s imports %s (layering)", pkg, imp)
					}
				}
			}
		}
	}
}
