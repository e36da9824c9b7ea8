package rooms

import (
	"context"
	"errors"
	"strings"

	"porthole/internal/auth"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
)

// Application services own namespaces of users and aliases (internal/appservice): their
// exclusive aliases are closed to everyone else, and a user or alias of theirs that does
// not exist yet is asked of them before it is called unknown.

// AppServiceQueries asks application services about a user or an alias that does not
// exist: true when one answered that it does (it has created it meanwhile).
type AppServiceQueries interface {
	QueryUser(ctx context.Context, userID string) (bool, error)
	QueryAlias(ctx context.Context, alias string) (bool, error)
}

// SetAppServiceQueries makes unknown users and aliases be asked of application services.
// Call it before serving.
func (s *Service) SetAppServiceQueries(q AppServiceQueries) { s.queries = q }

// mayClaimAlias applies the application services' namespaces to creating or deleting an
// alias: a service only in its own alias namespaces, anyone else outside the exclusive
// ones (400 M_EXCLUSIVE, as Synapse).
func (s *Service) mayClaimAlias(sess *auth.Session, alias string) error {
	if sess.AppService != nil {
		if !sess.AppService.AliasInNamespace(alias) {
			return mxerr.Exclusive(400, "This application service has not reserved this kind of alias")
		}
		return nil
	}
	if s.cfg.AppServices.ExclusiveAliasOwner(alias, nil) != nil {
		return mxerr.Exclusive(400, "This alias is reserved by an application service")
	}
	return nil
}

// userOrAsk reads a local user; one that does not exist is asked of the application
// services that claim it, and read again if one created it. Unknown users are
// storage.ErrNotFound.
func (s *Service) userOrAsk(ctx context.Context, userID string) (storage.User, error) {
	u, err := s.store.User(ctx, userID)
	if !errors.Is(err, storage.ErrNotFound) || s.queries == nil || s.cfg.AppServices.ExclusiveUserOwner(userID, nil) == nil {
		return u, err
	}
	if ok, err := s.queries.QueryUser(ctx, userID); err != nil {
		return u, err
	} else if !ok {
		return u, storage.ErrNotFound
	}
	return s.store.User(ctx, userID)
}

// aliasOrAsk resolves a local alias; one that does not exist is asked of the application
// services whose namespaces hold it, and resolved again if one created it.
func (s *Service) aliasOrAsk(ctx context.Context, alias string) (storage.Alias, error) {
	a, err := s.store.AliasRoom(ctx, alias)
	if !errors.Is(err, storage.ErrNotFound) || s.queries == nil || !strings.HasSuffix(alias, ":"+s.cfg.ServerName) {
		return a, err
	}
	if ok, err := s.queries.QueryAlias(ctx, alias); err != nil {
		return a, err
	} else if !ok {
		return a, storage.ErrNotFound
	}
	return s.store.AliasRoom(ctx, alias)
}
