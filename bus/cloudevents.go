package bus

import (
	"strconv"
	"strings"
	"time"
)

// CloudEvents 1.0 binary-mode header names. The body is the event's data;
// its content type is in the transport's own content-type header.
const (
	HeaderID            = "ce-id"
	HeaderSource        = "ce-source"
	HeaderType          = "ce-type"
	HeaderTime          = "ce-time"
	HeaderSpecVersion   = "ce-specversion"
	HeaderPartitionKey  = "ce-partitionkey" // CloudEvents partitioning extension
	HeaderCorrelationID = "ce-correlationid"
	HeaderCausationID   = "ce-causationid"
	HeaderTraceparent   = "traceparent"
	HeaderReplyTo       = "ce-replyto"
	HeaderDeadline      = "ce-deadline"
	SpecVersion         = "1.0"
)

// Dead-letter headers, added to a message moved to a dead-letter topic.
const (
	HeaderDLQID       = "dlq-id" // the id the message had before it died
	HeaderDLQReason   = "dlq-reason"
	HeaderDLQTopic    = "dlq-topic"
	HeaderDLQGroup    = "dlq-group"
	HeaderDLQAttempts = "dlq-attempts"
	HeaderDLQTime     = "dlq-time"
	// HeaderRedrive marks (with a value unique to each redrive) a dead
	// letter sent back to its topic under its original id, so consumers'
	// inboxes still recognise it while a broker's publish dedupe does not
	// drop it as a repeat.
	HeaderRedrive = "dlq-redrive"
)

// DedupeID is the id a broker should deduplicate m by: its id, or for a
// redriven message its id and redrive mark.
func DedupeID(m *Message) string {
	if n := m.Headers[HeaderRedrive]; n != "" {
		return m.ID + "/redrive-" + n
	}
	return m.ID
}

// HeaderContentType carries the content type of a message's body (the
// CloudEvents datacontenttype); a message without one is JSON.
const (
	HeaderContentType  = "content-type"
	DefaultContentType = "application/json"
)

// ContentType returns the content type of m's body.
func ContentType(m *Message) string {
	if ct := m.Headers[HeaderContentType]; ct != "" {
		return ct
	}
	return DefaultContentType
}

// Binding is how one protocol carries a message's CloudEvents 1.0
// attributes in binary content mode: every attribute, and every extension
// (a message's "ce-" headers, such as ce-replyto and ce-deadline), as a
// header named Prefix + attribute name; the data's content type in the
// protocol's own content-type (ContentType), kept apart from the other
// headers. Other headers (traceparent, dlq-*, saga-*) travel as they are.
type Binding struct {
	// Prefix goes before each attribute's name.
	Prefix string
}

// The bindings of the brokers Junction speaks.
var (
	// BindingHTTP is CloudEvents' HTTP and NATS binding: ce-id, ce-type,
	// …; it is also how the toolkit stores a message (the outbox).
	BindingHTTP = Binding{Prefix: "ce-"}
	// BindingNATS: the NATS binding uses the HTTP names, in NATS headers.
	BindingNATS = BindingHTTP
	// BindingKafka: ce_id, ce_type, … record headers; content-type a
	// record header too.
	BindingKafka = Binding{Prefix: "ce_"}
	// BindingAMQP: application properties cloudEvents:id, … (the AMQP
	// binding's names, in RabbitMQ's headers table); content-type is the
	// message's content-type property.
	BindingAMQP = Binding{Prefix: "cloudEvents:"}
	// BindingSTOMP: STOMP has no CloudEvents binding; its headers are
	// HTTP-like, so the HTTP names (which need no escaping in STOMP) are
	// used, with the frame's content-type header.
	BindingSTOMP = BindingHTTP
)

// attribute is a CloudEvents attribute or extension name (without prefix)
// and where it lives on a Message.
var attributes = []struct {
	name string
	get  func(m *Message) string
	set  func(m *Message, v string)
}{
	{"id", func(m *Message) string { return m.ID }, func(m *Message, v string) { m.ID = v }},
	{"type", func(m *Message) string { return m.Type }, func(m *Message, v string) { m.Type = v }},
	{"source", func(m *Message) string { return m.Source }, func(m *Message, v string) { m.Source = v }},
	{"specversion", func(*Message) string { return SpecVersion }, func(*Message, string) {}},
	{"time", func(m *Message) string {
		if m.Time.IsZero() {
			return ""
		}
		return m.Time.UTC().Format(time.RFC3339Nano)
	}, func(m *Message, v string) { m.Time, _ = time.Parse(time.RFC3339Nano, v) }},
	{"partitionkey", func(m *Message) string { return m.Key }, func(m *Message, v string) { m.Key = v }},
	{"correlationid", func(m *Message) string { return m.CorrelationID }, func(m *Message, v string) { m.CorrelationID = v }},
	{"causationid", func(m *Message) string { return m.CausationID }, func(m *Message, v string) { m.CausationID = v }},
}

// Headers returns m's attributes and headers as transport headers of b,
// without the content type (see ContentType).
//
// A header that would read back as one of the message's attributes (ce-id,
// Ce-Type, or the binding's spelling of one) is left out: the attributes
// come from the message's fields only, so no header can stand in for
// them. Other ce- headers are extensions, in the binding's names.
func (b Binding) Headers(m *Message) map[string]string {
	h := make(map[string]string, len(m.Headers)+len(attributes))
	prefix := strings.ToLower(b.Prefix)
	for k, v := range m.Headers {
		lk := strings.ToLower(k)
		name, ext := strings.CutPrefix(lk, "ce-")
		if !ext {
			name, ext = strings.CutPrefix(lk, prefix)
		}
		switch {
		case k == HeaderContentType:
		case ext && isAttribute(name):
		case ext:
			h[b.Prefix+name] = v
		default:
			h[k] = v
		}
	}
	for _, a := range attributes {
		if v := a.get(m); v != "" {
			h[b.Prefix+a.name] = v
		}
	}
	return h
}

func isAttribute(name string) bool {
	for _, a := range attributes {
		if a.name == name {
			return true
		}
	}
	return false
}

// Message rebuilds a message from transport headers of b (the content
// type, if the protocol has one, under HeaderContentType) and a body; the
// inverse of Headers. Names are matched case-insensitively, and the HTTP
// names are understood under every binding, so messages written before a
// broker's binding changed still read.
func (b Binding) Message(h map[string]string, body []byte) *Message {
	m := &Message{Body: body, Headers: map[string]string{}}
	prefix := strings.ToLower(b.Prefix)
	for k, v := range h {
		k = strings.ToLower(k)
		name, ok := strings.CutPrefix(k, prefix)
		if !ok {
			name, ok = strings.CutPrefix(k, "ce-")
		}
		if !ok {
			m.Headers[k] = v
			continue
		}
		known := false
		for _, a := range attributes {
			if a.name == name {
				a.set(m, v)
				known = true
				break
			}
		}
		if !known {
			m.Headers["ce-"+name] = v // an extension
		}
	}
	if m.Headers[HeaderContentType] == DefaultContentType {
		delete(m.Headers, HeaderContentType)
	}
	return m
}

// ToHeaders returns m's attributes and headers as one flat map under the
// HTTP binding, content type included: the form the toolkit stores.
func ToHeaders(m *Message) map[string]string {
	h := BindingHTTP.Headers(m)
	h[HeaderContentType] = ContentType(m)
	return h
}

// FromHeaders rebuilds a message from ToHeaders' map and a body.
func FromHeaders(h map[string]string, body []byte) *Message {
	return BindingHTTP.Message(h, body)
}

// Deadline returns the deadline a message carries (set by Request), if any.
func Deadline(m *Message) (time.Time, bool) {
	s, ok := m.Headers[HeaderDeadline]
	if !ok {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}
