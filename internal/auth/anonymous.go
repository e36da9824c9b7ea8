package auth

// Anonymous is a reader with no account: the web pages read rooms as it. It is a member of
// no room, so it sees exactly what any peeker of a world-readable room sees.
func Anonymous() *Session {
	return &Session{IsGuest: true, revoked: make(chan struct{})}
}

// Acting is the server acting as one of its local users without a token (the web pages'
// comment-room owner): a session no request can present.
func Acting(userID string) *Session {
	return &Session{UserID: userID, revoked: make(chan struct{})}
}
