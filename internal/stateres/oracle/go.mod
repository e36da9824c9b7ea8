// A test-only module: state resolution checked against an independent implementation
// (gomatrixserverlib's), kept apart so the server never depends on it.
module porthole/internal/stateres/oracle

go 1.27

toolchain go1.27.3

require (
	github.com/matrix-org/gomatrixserverlib v0.0.0-20260506075950-c9c468727353
	maunium.net/go/mautrix v0.32.0
	porthole v0.0.0
)

require (
	github.com/hashicorp/go-set/v3 v3.0.0 // indirect
	github.com/matrix-org/util v0.0.0-20221111132719-399730281e66 // indirect
	github.com/oleiade/lane/v2 v2.0.0 // indirect
	github.com/sirupsen/logrus v1.9.3 // indirect
	github.com/tidwall/gjson v1.20.0 // indirect
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.2.1 // indirect
	github.com/tidwall/sjson v1.2.5 // indirect
	go.mau.fi/util v0.11.0 // indirect
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/exp v0.0.0-20261014143641-f0251eb4aa3e // indirect
	golang.org/x/sys v0.50.0 // indirect
)

replace porthole => ../../..
