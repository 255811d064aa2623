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

// ToHeaders returns m's attributes and headers as one flat map of transport
// headers, CloudEvents binary mode.
func ToHeaders(m *Message) map[string]string {
	h := make(map[string]string, len(m.Headers)+8)
	for k, v := range m.Headers {
		h[k] = v
	}
	h[HeaderID] = m.ID
	h[HeaderType] = m.Type
	h[HeaderSpecVersion] = SpecVersion
	if m.Source != "" {
		h[HeaderSource] = m.Source
	}
	if !m.Time.IsZero() {
		h[HeaderTime] = m.Time.UTC().Format(time.RFC3339Nano)
	}
	if m.Key != "" {
		h[HeaderPartitionKey] = m.Key
	}
	if m.CorrelationID != "" {
		h[HeaderCorrelationID] = m.CorrelationID
	}
	if m.CausationID != "" {
		h[HeaderCausationID] = m.CausationID
	}
	return h
}

// FromHeaders rebuilds a message from transport headers and a body; the
// inverse of ToHeaders. Header names are matched case-insensitively.
func FromHeaders(h map[string]string, body []byte) *Message {
	m := &Message{Body: body, Headers: map[string]string{}}
	for k, v := range h {
		switch strings.ToLower(k) {
		case HeaderID:
			m.ID = v
		case HeaderType:
			m.Type = v
		case HeaderSource:
			m.Source = v
		case HeaderTime:
			m.Time, _ = time.Parse(time.RFC3339Nano, v)
		case HeaderPartitionKey:
			m.Key = v
		case HeaderCorrelationID:
			m.CorrelationID = v
		case HeaderCausationID:
			m.CausationID = v
		case HeaderSpecVersion:
		default:
			m.Headers[strings.ToLower(k)] = v
		}
	}
	return m
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
