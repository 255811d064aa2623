package saga

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/junction-go/junction/bus"
)

// Headers a saga's commands and replies carry besides CloudEvents'.
const (
	HeaderSagaID = "saga-id"
	HeaderStep   = "saga-step"
	// HeaderDir is "do" for a step's command, "undo" for its
	// compensation.
	HeaderDir = "saga-dir"
	// HeaderKey is the idempotency key of the effect: the same for every
	// attempt of one step in one direction.
	HeaderKey     = "saga-key"
	HeaderAttempt = "saga-attempt"
)

const (
	dirDo   = "do"
	dirUndo = "undo"
)

// Command is a saga command as a participant sees it.
type Command struct {
	SagaID string
	Step   string
	// Undo is true for a compensation.
	Undo bool
	// Key is the idempotency key: apply the effect at most once per key,
	// and answer a repeated key with the first answer.
	Key string
	// ReplyTo is the topic of the reply.
	ReplyTo string
	Msg     *bus.Message
}

// ParseCommand reads the saga headers of a delivered command. A message
// without them can never be handled: the error is bus.Permanent.
func ParseCommand(m *bus.Message) (Command, error) {
	c := Command{
		SagaID:  m.Headers[HeaderSagaID],
		Step:    m.Headers[HeaderStep],
		Undo:    m.Headers[HeaderDir] == dirUndo,
		Key:     m.Headers[HeaderKey],
		ReplyTo: m.Headers[bus.HeaderReplyTo],
		Msg:     m,
	}
	if c.SagaID == "" || c.Step == "" || c.Key == "" || c.ReplyTo == "" {
		return Command{}, bus.Permanent(fmt.Errorf("saga: message %s (%s) is not a saga command", m.ID, m.Type))
	}
	return c, nil
}

// reply is a reply's body.
type reply struct {
	OK     bool            `json:"ok"`
	Reason string          `json:"reason,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// Reply returns the answer to c, to be published to c.ReplyTo (through the
// participant's outbox, in the transaction of the effect). ok=false with a
// reason is a business refusal (out of stock, card declined): the saga
// compensates and does not retry. data, if not nil, is kept as the step's
// result. Its id derives from the command's, so answering the same
// delivery twice makes one reply. The caller sets its Source (the
// participant's name): a message without one is refused on publish.
func (c Command) Reply(ok bool, reason string, data any) (*bus.Message, error) {
	r := reply{OK: ok, Reason: reason}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return nil, fmt.Errorf("saga: reply data: %w", err)
		}
		r.Data = b
	}
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return &bus.Message{
		ID:            c.Msg.ID + ".reply",
		Type:          c.Msg.Type + "Reply",
		Time:          time.Now().UTC(),
		Key:           c.Msg.Key,
		CorrelationID: c.Msg.CorrelationID,
		CausationID:   c.Msg.ID,
		Headers: map[string]string{
			HeaderSagaID: c.SagaID,
			HeaderStep:   c.Step,
			HeaderDir:    c.Msg.Headers[HeaderDir],
			HeaderKey:    c.Key,
		},
		Body: body,
	}, nil
}

// parsedReply is a reply as the engine reads it.
type parsedReply struct {
	sagaID, step, dir string
	reply
}

func parseReply(m *bus.Message) (parsedReply, error) {
	p := parsedReply{sagaID: m.Headers[HeaderSagaID], step: m.Headers[HeaderStep], dir: m.Headers[HeaderDir]}
	if p.sagaID == "" || p.step == "" || (p.dir != dirDo && p.dir != dirUndo) {
		return p, errors.New("not a saga reply: missing saga headers")
	}
	if err := json.Unmarshal(m.Body, &p.reply); err != nil {
		return p, fmt.Errorf("saga reply body: %w", err)
	}
	return p, nil
}
