package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json/v2"

	"porthole/internal/storage"
	"porthole/internal/userdir"
)

// putDirectoryEntry makes the user's directory entry this profile, with its words.
func (t *txn) putDirectoryEntry(ctx context.Context, userID string, displayName, avatarURL *string) error {
	if _, err := t.exec(ctx, `INSERT INTO user_directory (user_id, display_name, avatar_url) VALUES ($1, $2, $3)
		ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name, avatar_url = excluded.avatar_url`,
		userID, ptrNull(displayName), ptrNull(avatarURL)); err != nil {
		return err
	}
	if _, err := t.exec(ctx, `DELETE FROM user_directory_words WHERE user_id = $1`, userID); err != nil {
		return err
	}
	for _, w := range userdir.Words(userID, displayName) {
		if _, err := t.exec(ctx, `INSERT INTO user_directory_words (word, user_id) VALUES ($1, $2)`, w, userID); err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) deleteDirectoryEntry(ctx context.Context, userID string) error {
	if _, err := t.exec(ctx, `DELETE FROM user_directory_words WHERE user_id = $1`, userID); err != nil {
		return err
	}
	_, err := t.exec(ctx, `DELETE FROM user_directory WHERE user_id = $1`, userID)
	return err
}

// indexRemoteMember keeps the directory entry of a user who is not local (no users row)
// as their latest joined member event shows them.
func (t *txn) indexRemoteMember(ctx context.Context, e *storage.Event) error {
	if e.Type != "m.room.member" || e.StateKey == nil || e.Membership != "join" || e.Outlier != "" {
		return nil
	}
	var local int
	if err := t.row(ctx, `SELECT COUNT(*) FROM users WHERE user_id = $1`, *e.StateKey).Scan(&local); err != nil || local > 0 {
		return err
	}
	var pdu struct {
		Content struct {
			DisplayName *string `json:"displayname"`
			AvatarURL   *string `json:"avatar_url"`
		} `json:"content"`
	}
	if json.Unmarshal(e.PDU, &pdu) != nil {
		pdu.Content.DisplayName, pdu.Content.AvatarURL = nil, nil // a profile of the wrong type is none
	}
	return t.putDirectoryEntry(ctx, *e.StateKey, pdu.Content.DisplayName, pdu.Content.AvatarURL)
}

// backfillUserDirectory adds the local users of a database made before the directory.
func backfillUserDirectory(ctx context.Context, t *txn) error {
	rows, err := t.query(ctx, `SELECT user_id, displayname, avatar_url FROM users WHERE NOT deactivated`)
	type profile struct {
		id       string
		name, av *string
	}
	users, err := collect(rows, err, func(rows *sql.Rows) (profile, error) {
		var p profile
		var dn, av sql.NullString
		err := rows.Scan(&p.id, &dn, &av)
		p.name, p.av = nullPtr(dn), nullPtr(av)
		return p, err
	})
	if err != nil {
		return err
	}
	for _, u := range users {
		if err := t.putDirectoryEntry(ctx, u.id, u.name, u.av); err != nil {
			return err
		}
	}
	return nil
}

func (r reader) SearchUserDirectory(ctx context.Context, q storage.DirectoryQuery) ([]storage.DirectoryEntry, error) {
	if len(q.Words) == 0 {
		return nil, nil
	}
	query := `SELECT d.user_id, d.display_name, d.avatar_url FROM user_directory d WHERE `
	args := []any{q.Searcher}
	for i, w := range q.Words {
		if i > 0 {
			query += ` AND `
		}
		n := len(args)
		query += `d.user_id IN (SELECT user_id FROM user_directory_words WHERE word >= $` + itoa(n+1) + ` AND word < $` + itoa(n+2) + `)`
		// Every word with this prefix sorts below prefix + U+10FFFF (byte order).
		args = append(args, w, w+"\U0010FFFF")
	}
	if q.AllUsers {
		query += ` AND d.user_id <> $1`
	} else {
		// Users in a room anyone may join or read, or in a room with the searcher.
		query += ` AND (EXISTS (SELECT 1 FROM room_members m JOIN room_state s ON s.room_id = m.room_id
				AND ((s.type = 'm.room.join_rules' AND s.state_key = '') OR (s.type = 'm.room.history_visibility' AND s.state_key = ''))
				JOIN events e ON e.event_id = s.event_id
				WHERE m.user_id = d.user_id AND m.membership = 'join'
				AND (` + r.d.contentField("e.pdu", "join_rule") + ` = 'public' OR ` + r.d.contentField("e.pdu", "history_visibility") + ` = 'world_readable'))
			OR (d.user_id <> $1 AND EXISTS (SELECT 1 FROM room_members a JOIN room_members b ON b.room_id = a.room_id
				WHERE a.user_id = $1 AND a.membership = 'join' AND b.user_id = d.user_id AND b.membership = 'join')))`
	}
	query += ` ORDER BY d.user_id LIMIT $` + itoa(len(args)+1)
	args = append(args, q.Limit)
	rows, err := r.query(ctx, query, args...)
	return collect(rows, err, func(rows *sql.Rows) (storage.DirectoryEntry, error) {
		var e storage.DirectoryEntry
		var dn, av sql.NullString
		err := rows.Scan(&e.UserID, &dn, &av)
		e.DisplayName, e.AvatarURL = nullPtr(dn), nullPtr(av)
		return e, err
	})
}
