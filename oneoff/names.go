package oneoff

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"math/big"

	"github.com/oneoffd/oneoffd/errdefs"
)

// userMessage is what a person is told of err: the sentence of its
// errdefs.Error when it has one, without the causes behind it, which go to
// the daemon's log.
func userMessage(err error) string {
	if e, ok := errdefs.As(err); ok {
		return e.Message
	}
	return err.Error()
}

// describe says in a few words how a finished one-off ended.
func describe(rec OneOff) string {
	d := string(rec.Outcome)
	switch {
	case rec.Error != "":
		d = fmt.Sprintf("%s: %s", rec.Outcome, rec.Error)
	case rec.ExitCode != nil:
		d = fmt.Sprintf("%s, exit code %d", rec.Outcome, *rec.ExitCode)
	}
	return d + onNode(rec)
}

// onNode says where rec ran, for the audit trail: "" before it was placed.
func onNode(rec OneOff) string {
	if rec.Node == "" {
		return ""
	}
	return " (node " + rec.Node + ")"
}

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// newID returns a random identifier, 16 characters of Crockford's base32.
func newID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return idEncoding.EncodeToString(b)
}

// randomString returns n random bytes, base64url-encoded.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// randomNumber returns a random number of exactly digits decimal digits.
func randomNumber(digits int) int64 {
	lo := int64(1)
	for i := 1; i < digits; i++ {
		lo *= 10
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(9*lo))
	return lo + n.Int64()
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
