// Package sqlstore is the one SQL implementation of storage.Store, for SQLite (embedded
// default) and PostgreSQL. Queries are written once with $n placeholders; the dialect
// rewrites them for SQLite.
package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/mattn/go-sqlite3"

	"porthole/internal/storage"
	"porthole/internal/stream"
)

type dialect int

const (
	sqliteDialect dialect = iota
	postgresDialect
)

// Store implements storage.Store.
type Store struct {
	reader
	writer  *sql.DB // SQLite: one connection, so writes are serialised; PostgreSQL: the pool
	readDB  *sql.DB
	dialect dialect
	dsn     string
	// channelSuffix scopes notification channels to the schema: LISTEN/NOTIFY is per
	// database, and servers in other schemas of the same database must not hear us.
	channelSuffix string
	// OnSubscribeError is told about LISTEN connection failures (for logs).
	OnSubscribeError func(error)
}

func (s *Store) onSubscribeError(err error) {
	if s.OnSubscribeError != nil {
		s.OnSubscribeError(err)
	}
}

var _ storage.Store = (*Store)(nil)

// Options tunes the connection pools.
type Options struct {
	SQLiteReaders     int
	PGMaxConns        int
	PGConnMaxLifetime time.Duration
}

// Open connects to dsn ("sqlite://path", a plain file path, or "postgres://..."), applies
// pending migrations and returns the store.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	var s *Store
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://"):
		s, err = openPostgres(dsn, opts)
	default:
		s, err = openSQLite(strings.TrimPrefix(dsn, "sqlite://"), opts)
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openSQLite(path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("sqlite: creating %s: %w", dir, err)
		}
	}
	// synchronous=NORMAL in WAL mode: a killed process loses nothing that committed; only a
	// power cut can lose the last transactions.
	params := url.Values{}
	params.Set("_journal_mode", "WAL")
	params.Set("_synchronous", "NORMAL")
	params.Set("_busy_timeout", "10000")
	params.Set("_foreign_keys", "on")
	params.Set("_txlock", "immediate")
	params.Set("_cache_size", "-16000")
	// Keep prepared statements per connection: preparing was a sixth of a send's CPU.
	params.Set("_stmt_cache_size", "256")
	base := "file:" + path + "?"
	writer, err := sql.Open(sqliteDriver, base+params.Encode())
	if err != nil {
		return nil, err
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	if err := writer.Ping(); err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite: opening %s: %w", path, err)
	}
	params.Set("_txlock", "deferred")
	params.Set("_query_only", "true")
	readDB, err := sql.Open(sqliteDriver, base+params.Encode())
	if err != nil {
		writer.Close()
		return nil, err
	}
	n := opts.SQLiteReaders
	if n <= 0 {
		n = 8
	}
	readDB.SetMaxOpenConns(n)
	readDB.SetMaxIdleConns(n)
	readDB.SetConnMaxIdleTime(0)
	readDB.SetConnMaxLifetime(0)
	s := &Store{writer: writer, readDB: readDB, dialect: sqliteDialect}
	s.reader = reader{q: readDB, d: sqliteDialect}
	return s, nil
}

func openPostgres(dsn string, opts Options) (*Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	n := opts.PGMaxConns
	if n <= 0 {
		n = 20
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxLifetime(opts.PGConnMaxLifetime)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	var schema string
	if err := db.QueryRow(`SELECT current_schema()`).Scan(&schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: reading the schema: %w", err)
	}
	s := &Store{writer: db, readDB: db, dialect: postgresDialect, dsn: dsn, channelSuffix: channelSuffix(schema)}
	s.reader = reader{q: db, d: postgresDialect}
	return s, nil
}

// channelSuffix is "" for the default schema (so the channel names stay those of earlier
// versions) and a short hash of the schema's name otherwise (channel names are limited to
// 63 bytes).
func channelSuffix(schema string) string {
	if schema == "" || schema == "public" {
		return ""
	}
	sum := sha256.Sum256([]byte(schema))
	return "_" + hex.EncodeToString(sum[:8])
}

// Close closes the pools.
func (s *Store) Close() error {
	err := s.writer.Close()
	if s.readDB != s.writer {
		err = errors.Join(err, s.readDB.Close())
	}
	return err
}

// Write runs fn in one transaction on the writer.
func (s *Store) Write(ctx context.Context, fn func(storage.Tx) error) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	t := &txn{reader: reader{q: tx, d: s.dialect}, channelSuffix: s.channelSuffix}
	if err := fn(t); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	for _, f := range t.afterCommit {
		f()
	}
	return nil
}

// MaxPos reads the committed stream position.
func (s *Store) MaxPos(ctx context.Context) (stream.Pos, error) {
	var v int64
	err := s.q.QueryRowContext(ctx, s.d.rebind("SELECT value FROM counters WHERE name = 'stream'")).Scan(&v)
	return stream.Pos(v), err
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

var (
	placeholder = regexp.MustCompile(`\$(\d+)`)
	rebound     sync.Map // query -> SQLite form
	// reboundCount counts rebound's entries, at most maxRebound.
	reboundCount atomic.Int64
)

const maxRebound = 4096

// rebind turns $n placeholders into SQLite's ?n, which bind by number (SQLite would
// number "$n" parameters by first appearance instead).
func (d dialect) rebind(q string) string {
	if d == postgresDialect {
		return q
	}
	if v, ok := rebound.Load(q); ok {
		return v.(string)
	}
	out := placeholder.ReplaceAllString(q, "?$1")
	// Queries with variable-length lists come in many shapes; keep the cache bounded.
	if reboundCount.Load() < maxRebound {
		if _, loaded := rebound.LoadOrStore(q, out); !loaded {
			reboundCount.Add(1)
		}
	}
	return out
}

// contentField is the SQL for a string field of an event's content, read from a PDU column.
func (d dialect) contentField(pduCol, key string) string {
	if d == postgresDialect {
		return "((" + pduCol + ")::jsonb -> 'content' ->> '" + key + "')"
	}
	return "json_extract(" + pduCol + ", '$.content." + key + "')"
}

// translate maps driver errors to storage errors.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return storage.ErrNotFound
	}
	var se sqlite3.Error
	if errors.As(err, &se) && se.Code == sqlite3.ErrConstraint &&
		(se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey || se.ExtendedCode == sqlite3.ErrConstraintUnique) {
		return fmt.Errorf("%w: %v", storage.ErrConflict, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("%w: %v", storage.ErrConflict, err)
	}
	return err
}
