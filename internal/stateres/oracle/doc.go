// Package oracle holds only a test: random forks resolved by internal/stateres and by
// gomatrixserverlib must agree.
package oracle
