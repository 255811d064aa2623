package e2e

import (
	"log/slog"
	"testing"
	"time"

	"github.com/junction-go/junction/api/events"
	"github.com/junction-go/junction/internal/order"
	paymentclients "github.com/junction-go/junction/internal/payment/clients"
	"github.com/junction-go/junction/saga"
)

// localWork bounds a participant's own part of handling a command: reading
// its state and committing the effect, the inbox record and the reply.
const localWork = time.Second

// TestEveryParticipantFitsItsStep: the longest a participant can spend on
// one command, every retry of its own outbound calls included, fits inside
// the wait of the saga step that sent it, so an attempt can succeed even
// when every retry is needed. (A handling is not cut off at its
// command's deadline; one that started just in time ends within this
// worst case after it, and the saga's next attempt, of the same key,
// queues behind it. See docs/architecture.md, "Retries: one layer per
// hop".)
func TestEveryParticipantFitsItsStep(t *testing.T) {
	// What each participant calls while handling one command, by the
	// topic it listens on.
	worst := map[string]time.Duration{
		events.TopicPaymentCommands:   paymentclients.ProviderPolicy(slog.New(slog.DiscardHandler)).WorstCase() + localWork,
		events.TopicInventoryCommands: localWork,
		events.TopicShippingCommands:  localWork,
	}
	for _, def := range []*saga.Definition{order.PlaceOrderSaga(), order.CancelOrderSaga()} {
		for _, step := range def.Steps {
			acts := []saga.Action{step.Do}
			if step.Undo != nil {
				acts = append(acts, *step.Undo)
			}
			for _, act := range acts {
				w, ok := worst[act.Topic]
				if !ok {
					t.Errorf("%s/%s: %s goes to %s, whose worst case is not known here", def.Name, step.Name, act.Type, act.Topic)
					continue
				}
				// A compensation waits at least the step's timeout too.
				timeout := step.Timeout
				if timeout == 0 {
					timeout = 5 * time.Second // the engine's default
				}
				if w > timeout {
					t.Errorf("%s/%s: %s can take %v on %s, longer than the step's %v wait", def.Name, step.Name, act.Type, w, act.Topic, timeout)
				}
			}
		}
	}
}
