package sqlstore

import (
	"context"
	"testing"

	"porthole/internal/storage"
)

// The migration's Go step adds the local users of a database made before the directory.
func TestBackfillUserDirectory(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, "sqlite://"+t.TempDir()+"/b.db", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	name := "Old Timer"
	err = s.Write(ctx, func(tx storage.Tx) error {
		if err := tx.CreateUser(ctx, storage.User{ID: "@old:hs", DisplayName: &name, CreatedTS: 1}); err != nil {
			return err
		}
		if err := tx.CreateUser(ctx, storage.User{ID: "@gone:hs", CreatedTS: 1}); err != nil {
			return err
		}
		if err := tx.Deactivate(ctx, "@gone:hs"); err != nil {
			return err
		}
		t := tx.(*txn)
		for _, q := range []string{`DELETE FROM user_directory_words`, `DELETE FROM user_directory`} {
			if _, err := t.exec(ctx, q); err != nil {
				return err
			}
		}
		return backfillUserDirectory(ctx, t)
	})
	if err != nil {
		t.Fatal(err)
	}
	for words, want := range map[string]int{"timer": 1, "gone": 0} {
		es, err := s.SearchUserDirectory(ctx, storage.DirectoryQuery{Searcher: "@x:hs", Words: []string{words}, AllUsers: true, Limit: 5})
		if err != nil || len(es) != want {
			t.Fatalf("%s: %v %v", words, es, err)
		}
	}
}
