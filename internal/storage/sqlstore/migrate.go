package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations lists the embedded files NNNN_name.sql, plus NNNN_name.sqlite.sql /
// NNNN_name.postgres.sql where the DDL differs between engines.
func (s *Store) migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	engine := map[dialect]string{sqliteDialect: "sqlite", postgresDialect: "postgres"}[s.dialect]
	var out []migration
	for _, e := range entries {
		name := e.Name()
		base := strings.TrimSuffix(name, ".sql")
		if i := strings.IndexByte(base, '.'); i >= 0 {
			if base[i+1:] != engine {
				continue
			}
			base = base[:i]
		}
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s is not named NNNN_name.sql", name)
		}
		body, err := fs.ReadFile(migrationFiles, "migrations/"+name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := range out {
		if out[i].version != i+1 {
			return nil, fmt.Errorf("migrations must be numbered 1, 2, 3...: found %s at place %d", out[i].name, i+1)
		}
	}
	return out, nil
}

// migrate applies pending migrations, each in its own transaction, and refuses a database
// that is newer than this binary.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := s.migrations()
	if err != nil {
		return err
	}
	if _, err := s.writer.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ts BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("creating schema_migrations: %w", err)
	}
	var have int
	if err := s.writer.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if have > len(ms) {
		return fmt.Errorf("database schema version %d is newer than this binary supports (%d): upgrade Porthole", have, len(ms))
	}
	for _, m := range ms[have:] {
		tx, err := s.writer.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for _, stmt := range splitStatements(m.sql) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				tx.Rollback()
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
		}
		if step := goSteps[migrationBase(m.name)]; step != nil {
			if err := step(ctx, &txn{reader: reader{q: tx, d: s.dialect}, channelSuffix: s.channelSuffix}); err != nil {
				tx.Rollback()
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.d.rebind(`INSERT INTO schema_migrations (version, applied_ts) VALUES ($1, $2)`), m.version, time.Now().UnixMilli()); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return nil
}

// goSteps are migrations' parts written in Go (what SQL cannot compute, such as the user
// directory's words), run after the file's SQL in its transaction. They are keyed by the
// migration's name without its number, so that renumbering a migration keeps its step.
var goSteps = map[string]func(ctx context.Context, t *txn) error{
	"user_directory": backfillUserDirectory,
}

// migrationBase is a migration file's name without its number and suffixes:
// "0013_user_directory.sqlite.sql" is "user_directory".
func migrationBase(file string) string {
	_, rest, _ := strings.Cut(file, "_")
	base, _, _ := strings.Cut(rest, ".")
	return base
}

// splitStatements splits a migration on semicolons at line ends, dropping comments.
func splitStatements(src string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") || trimmed == "" {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
