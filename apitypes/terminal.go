package apitypes

// Rejoined is the answer to POST /v1/oneoffs/{id}/terminal: where and with
// which resume token a second terminal takes an attached one-off over.
type Rejoined struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	AttachURL   string `json:"attach_url"`
	ResumeToken string `json:"resume_token"`
}

// AttachUpgrade is the protocol a create request may ask to switch to
// (Connection: Upgrade, Upgrade: oneoff-attach): the answer is then
// 101 Switching Protocols, the one-off's id, name and attach URL in its
// headers, and the connection carries the attach protocol in framed mode
// from the handshake's reply on, as if the client had dialled the attach
// endpoint with the one-off's secret and "framed resumable": a round trip
// and a connection fewer.
const AttachUpgrade = "oneoff-attach"

// The headers of the 101 answer to a create request upgraded to attach.
const (
	OneOffIDHeader        = "Oneoff-Id"
	OneOffNameHeader      = "Oneoff-Name"
	OneOffAttachURLHeader = "Oneoff-Attach-Url"
)
