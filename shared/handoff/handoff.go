// Package handoff moves an open HTTP client connection, with the bytes
// already read from it, between mlfleet-edge's gateway and a scorer.
//
// The gateway answers every client on one port but does not stay in the
// data path: once it has read a request and chosen the service, it passes
// the client's socket (SCM_RIGHTS over a unix seqpacket socket the scorer
// listens on) together with the request bytes it has consumed, and the
// scorer serves that connection from then on. A scorer hands a connection
// back the same way when a request on it is for another service, or when it
// is draining before it stops; the gateway then routes it again.
//
// A draining scorer first sends "drain"; the gateway stops handing it
// connections and answers "drained". The socket is ordered, so every
// connection sent before that answer arrives before it, and the scorer
// knows when nothing more can come.
//
// A serve or return message carries one descriptor, drain and drained
// none; each has this payload:
//
//	"MLFH"  magic
//	1 byte  wire version (1)
//	2 bytes header length n, big endian
//	n bytes header, JSON (Header)
//	rest    bytes read from the connection that the receiver must serve
//	        before reading from the socket
package handoff

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Version is the wire version this package writes and reads.
const Version = 1

// MaxMessage bounds one message (header and prefix together).
const MaxMessage = 64 << 10

// maxHeader bounds the JSON header.
const maxHeader = 4 << 10

const magic = "MLFH"

// Kinds of message.
const (
	// KindServe passes a connection from the gateway to a scorer.
	KindServe = "serve"
	// KindReturn passes a connection from a scorer back to the gateway.
	KindReturn = "return"
	// KindDrain tells the gateway the scorer is stopping: send no more.
	KindDrain = "drain"
	// KindDrained answers KindDrain: nothing more will be sent.
	KindDrained = "drained"
)

// CarriesConn reports whether messages of kind carry a descriptor.
func CarriesConn(kind string) bool { return kind == KindServe || kind == KindReturn }

// Reasons a scorer returns a connection.
const (
	// ReasonForeign: the next request is for another service or model.
	ReasonForeign = "foreign"
	// ReasonDraining: the scorer is stopping.
	ReasonDraining = "draining"
)

// Header describes a handed-off connection.
type Header struct {
	Kind string `json:"kind"`
	// Service and Model are what the gateway routes to the scorer now:
	// /services/<Service>/... and /v2/models/<Model>/... (serve only).
	Service string `json:"service,omitempty"`
	Model   string `json:"model,omitempty"`
	// KeySHA256, when not empty, is the hex SHA-256 of the bearer key every
	// request must carry (serve only; the key itself never leaves the
	// gateway). See KeyHash and KeyMatches.
	KeySHA256 string `json:"keySha256,omitempty"`
	// Reason says why a connection comes back (return only).
	Reason string `json:"reason,omitempty"`
}

// Validate checks a header's fields.
func (h Header) Validate() error {
	switch h.Kind {
	case KindServe:
		if h.Service == "" {
			return errclass.Invalid("service", "service is required to serve a connection")
		}
		if h.Reason != "" {
			return errclass.Invalid("reason", "reason %q is only for returned connections", h.Reason)
		}
		if h.KeySHA256 != "" && (len(h.KeySHA256) != 64 || strings.Trim(h.KeySHA256, "0123456789abcdef") != "") {
			return errclass.Invalid("keySha256", "keySha256 %q is not 64 lowercase hex digits", h.KeySHA256)
		}
	case KindReturn:
		if h.Reason != ReasonForeign && h.Reason != ReasonDraining {
			return errclass.Invalid("reason", "reason %q is not %q or %q", h.Reason, ReasonForeign, ReasonDraining)
		}
		if h.Service != "" || h.Model != "" || h.KeySHA256 != "" {
			return errclass.Invalid("kind", "a returned connection carries no service, model or key")
		}
	case KindDrain, KindDrained:
		if h != (Header{Kind: h.Kind}) {
			return errclass.Invalid("kind", "a %s message carries no other field", h.Kind)
		}
	default:
		return errclass.Invalid("kind", "kind %q is not %q, %q, %q or %q", h.Kind, KindServe, KindReturn, KindDrain, KindDrained)
	}
	return nil
}

// KeyHash returns the KeySHA256 of key ("" for no key).
func KeyHash(key string) string {
	if key == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// KeyMatches reports whether the Authorization header value auth carries
// the bearer key whose KeyHash is keyHash.
func KeyMatches(auth, keyHash string) bool {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(KeyHash(tok)), []byte(keyHash)) == 1
}

// Encode returns the payload of one message.
func Encode(h Header, prefix []byte) ([]byte, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	hb, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode handoff header: %w", err)
	}
	if len(hb) > maxHeader {
		return nil, errclass.New(errclass.TooLarge, "header", "handoff header of %d bytes is over %d", len(hb), maxHeader)
	}
	n := len(magic) + 3 + len(hb) + len(prefix)
	if n > MaxMessage {
		return nil, errclass.New(errclass.TooLarge, "prefix", "handoff message of %d bytes is over %d", n, MaxMessage)
	}
	out := make([]byte, 0, n)
	out = append(out, magic...)
	out = append(out, Version)
	out = binary.BigEndian.AppendUint16(out, uint16(len(hb)))
	out = append(out, hb...)
	return append(out, prefix...), nil
}

// Decode parses a message payload strictly: magic, version, a header of
// known fields only that validates. The prefix aliases msg.
func Decode(msg []byte) (Header, []byte, error) {
	var h Header
	if len(msg) > MaxMessage {
		return h, nil, errclass.New(errclass.TooLarge, "message", "handoff message of %d bytes is over %d", len(msg), MaxMessage)
	}
	if len(msg) < len(magic)+3 || string(msg[:len(magic)]) != magic {
		return h, nil, errclass.Invalid("magic", "not a handoff message")
	}
	if v := msg[len(magic)]; v != Version {
		return h, nil, errclass.Invalid("version", "handoff wire version %d is not %d", v, Version)
	}
	n := int(binary.BigEndian.Uint16(msg[len(magic)+1:]))
	rest := msg[len(magic)+3:]
	if n > maxHeader || n > len(rest) {
		return h, nil, errclass.Invalid("header", "header length %d is over the %d bytes there are (or %d)", n, len(rest), maxHeader)
	}
	dec := json.NewDecoder(bytes.NewReader(rest[:n]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return Header{}, nil, errclass.Invalid("header", "handoff header: %v", err)
	}
	if dec.More() {
		return Header{}, nil, errclass.Invalid("header", "handoff header has trailing data")
	}
	if err := h.Validate(); err != nil {
		return Header{}, nil, err
	}
	return h, rest[n:], nil
}
