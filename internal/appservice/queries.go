package appservice

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"porthole/internal/mxerr"
)

// Queries ask services about users and aliases that do not exist yet: a service that
// answers 200 has created the entity meanwhile (the spec's "the application service
// SHOULD create the queried entity"), and the caller looks again. A client waits for
// these, so each call is bounded by QueryTimeout; a service that cannot be reached is a
// clear error (502, or 504 when it did not answer in time), never a hang.

// QueryUser asks the services that claim userID exclusively whether it exists. It
// reports whether one said yes.
func (s *Service) QueryUser(ctx context.Context, userID string) (bool, error) {
	var errs []error
	for _, reg := range s.reg.All() {
		if reg.URL == "" || !reg.ExclusiveUser(userID) || userID == reg.Sender {
			continue
		}
		ok, err := s.query(ctx, reg, "/_matrix/app/v1/users/"+url.PathEscape(userID))
		if ok {
			return true, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return false, s.queryError(errs, "user "+userID)
}

// QueryAlias asks the services whose alias namespaces hold alias whether it exists. It
// reports whether one said yes.
func (s *Service) QueryAlias(ctx context.Context, alias string) (bool, error) {
	var errs []error
	for _, reg := range s.reg.All() {
		if reg.URL == "" || !reg.AliasInNamespace(alias) {
			continue
		}
		ok, err := s.query(ctx, reg, "/_matrix/app/v1/rooms/"+url.PathEscape(alias))
		if ok {
			return true, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return false, s.queryError(errs, "alias "+alias)
}

// query makes one user or alias query: true for 200, false for 404 (or another answer
// that says no), an error when the service could not be asked.
func (s *Service) query(ctx context.Context, reg *Registration, path string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	err := s.call(ctx, reg, "GET", path, nil, nil, nil)
	if err == nil {
		return true, nil
	}
	var ce *callError
	if errors.As(err, &ce) && ce.Status != 0 && ce.Status < 500 {
		if ce.Status != http.StatusNotFound {
			s.log.Info("application service answered a query with an error", "appservice", reg.ID, "path", path, "status", ce.Status)
		}
		return false, nil
	}
	s.log.Warn("application service query failed", "appservice", reg.ID, "path", path, "err", err)
	return false, &queryFailure{reg: reg, err: ce}
}

type queryFailure struct {
	reg *Registration
	err *callError
}

func (q *queryFailure) Error() string { return q.reg.ID + ": " + q.err.Error() }

// queryError turns failed queries into the client's answer: nil when every service that
// was asked answered.
func (s *Service) queryError(errs []error, what string) error {
	if len(errs) == 0 {
		return nil
	}
	var qf *queryFailure
	if errors.As(errs[0], &qf) && qf.err != nil && qf.err.Timeout {
		return (&mxerr.Error{Status: http.StatusGatewayTimeout, Code: "M_UNKNOWN",
			Message: "The application service responsible for " + what + " did not answer in time"}).With(errors.Join(errs...))
	}
	return (&mxerr.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN",
		Message: "The application service responsible for " + what + " is unavailable"}).With(errors.Join(errs...))
}

// Ping calls a service's /_matrix/app/v1/ping with the transaction ID its caller gave
// and returns how long the call took; errors are the spec's (400 M_URL_NOT_SET, 502
// M_CONNECTION_FAILED or M_BAD_STATUS with the service's status and body, 504
// M_CONNECTION_TIMEOUT).
func (s *Service) Ping(ctx context.Context, reg *Registration, txnID string) (time.Duration, error) {
	if reg.URL == "" {
		return 0, &mxerr.Error{Status: 400, Code: "M_URL_NOT_SET", Message: "Application service doesn't have a URL configured"}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	body := map[string]string{}
	if txnID != "" {
		body["transaction_id"] = txnID
	}
	start := time.Now()
	err := s.call(ctx, reg, "POST", "/_matrix/app/v1/ping", nil, body, nil)
	took := time.Since(start)
	var ce *callError
	switch {
	case err == nil:
		return took, nil
	case !errors.As(err, &ce):
		return 0, mxerr.Internal(err)
	case ce.Timeout:
		return 0, &mxerr.Error{Status: 504, Code: "M_CONNECTION_TIMEOUT", Message: "Connection to application service timed out"}
	case ce.Status != 0:
		b := ce.Body
		if len(b) > 4096 {
			b = b[:4096]
		}
		return 0, &mxerr.Error{Status: 502, Code: "M_BAD_STATUS", Message: "Ping returned status " + strconv.Itoa(ce.Status),
			Extra: map[string]any{"status": ce.Status, "body": b}}
	}
	return 0, &mxerr.Error{Status: 502, Code: "M_CONNECTION_FAILED", Message: "Connection to application service failed: " + ce.Err.Error()}
}
