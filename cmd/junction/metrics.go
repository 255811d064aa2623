package main

import (
	"context"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/internal/gateway"
	"github.com/junction-go/junction/internal/order"
	"github.com/junction-go/junction/internal/registry"
	"github.com/junction-go/junction/outbox"
	"github.com/junction-go/junction/resilience"
	"github.com/junction-go/junction/saga"
	"github.com/junction-go/junction/sqldb"
	"github.com/junction-go/junction/telemetry"
)

// meteredBus counts and times what a service publishes and handles, by
// topic, group and outcome, around its connection to the broker.
type meteredBus struct {
	messageBus
	published, consumed, deadLetters *prometheus.CounterVec
	publishTime, consumeTime         *prometheus.HistogramVec
}

var messagingBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// meterBus returns b counted into m; b itself without metrics (m nil).
func meterBus(b messageBus, m *telemetry.Metrics) messageBus {
	if m == nil {
		return b
	}
	mb := &meteredBus{
		messageBus: b,
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "messaging_publish_total", Help: "Messages published to the broker, by topic and outcome (ok: the broker acknowledged; error: it did not, and the outbox tries again).",
		}, []string{"topic", "outcome"}),
		publishTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "messaging_publish_duration_seconds", Help: "Time from publish to the broker's acknowledgement, by topic.", Buckets: messagingBuckets,
		}, []string{"topic"}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "messaging_process_total", Help: "Deliveries, by topic, consumer group and outcome: handled (acknowledged: applied, a duplicate the inbox skipped, dropped past its deadline, or moved to the dead letters, see messaging_dead_letters_total), redelivered (a transient failure) or rejected (a permanent one the handler did not dead-letter).",
		}, []string{"topic", "group", "outcome"}),
		consumeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "messaging_process_duration_seconds", Help: "Time to handle a delivery, by topic and consumer group.", Buckets: messagingBuckets,
		}, []string{"topic", "group"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "messaging_dead_letters_total", Help: "Messages this process gave up on and moved to the dead-letter topic, by origin topic and group.",
		}, []string{"topic", "group"}),
	}
	m.Registerer().MustRegister(mb.published, mb.publishTime, mb.consumed, mb.consumeTime, mb.deadLetters)
	return mb
}

func (b *meteredBus) Publish(ctx context.Context, topic string, msgs ...*bus.Message) error {
	start := time.Now()
	err := b.messageBus.Publish(ctx, topic, msgs...)
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	b.published.WithLabelValues(topic, outcome).Add(float64(len(msgs)))
	b.publishTime.WithLabelValues(topic).Observe(time.Since(start).Seconds())
	if topic == bus.DeadLetterTopic && err == nil {
		for _, m := range msgs {
			b.deadLetters.WithLabelValues(m.Headers[bus.HeaderDLQTopic], m.Headers[bus.HeaderDLQGroup]).Inc()
		}
	}
	return err
}

func (b *meteredBus) Subscribe(ctx context.Context, topic, group string, h bus.Handler) (bus.Subscription, error) {
	// The labels are fixed for the subscription: look the series up once,
	// not on every delivery.
	outcomes := map[string]prometheus.Counter{}
	for _, o := range []string{"handled", "rejected", "redelivered"} {
		outcomes[o] = b.consumed.WithLabelValues(topic, group, o)
	}
	took := b.consumeTime.WithLabelValues(topic, group)
	return b.messageBus.Subscribe(ctx, topic, group, func(ctx context.Context, m *bus.Message) error {
		start := time.Now()
		err := h(ctx, m)
		outcome := "handled"
		switch {
		case bus.IsPermanent(err):
			outcome = "rejected"
		case err != nil:
			outcome = "redelivered"
		}
		outcomes[outcome].Inc()
		took.Observe(time.Since(start).Seconds())
		return err
	})
}

// Check passes the broker's round trip through, for readiness.
func (b *meteredBus) Check(ctx context.Context) error { return checkBroker(ctx, b.messageBus) }

// meterOutbox reports ob's backlog at every scrape (one query): how many
// messages wait and how old the oldest is (the lag between a commit and
// its publish).
func meterOutbox(m *telemetry.Metrics, ob *outbox.Outbox) {
	if m == nil {
		return // metrics off
	}
	unsent := prometheus.NewDesc("outbox_unsent_messages", "Messages committed to the outbox and not yet acknowledged by the broker.", nil, nil)
	age := prometheus.NewDesc("outbox_oldest_unsent_age_seconds", "Age of the oldest message the outbox has not sent yet; 0 when none waits.", nil, nil)
	m.Registerer().MustRegister(funcCollector{descs: []*prometheus.Desc{unsent, age}, collect: func(ch chan<- prometheus.Metric) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		b, err := ob.Backlog(ctx)
		if err != nil {
			return
		}
		ch <- prometheus.MustNewConstMetric(unsent, prometheus.GaugeValue, float64(b.Unsent))
		ch <- prometheus.MustNewConstMetric(age, prometheus.GaugeValue, b.OldestAge.Seconds())
	}})
}

// meterPolicies reports each outbound dependency's policy, by dependency
// name: its breaker's state and what the policy did.
func meterPolicies(m *telemetry.Metrics, policies map[string]*resilience.Policy) {
	if m == nil {
		return // metrics off
	}
	label := []string{"dependency"}
	state := prometheus.NewDesc("resilience_breaker_state", "The dependency's circuit breaker: 0 closed, 1 half-open, 2 open.", label, nil)
	calls := prometheus.NewDesc("resilience_calls_total", "Calls made to the dependency through its policy.", label, nil)
	retries := prometheus.NewDesc("resilience_retries_total", "Attempts sent again after a transient failure.", label, nil)
	rejected := prometheus.NewDesc("resilience_rejected_total", "Calls refused without reaching the dependency (breaker open, bulkhead full, retry budget spent).", label, nil)
	opened := prometheus.NewDesc("resilience_breaker_opened_total", "Times the breaker opened.", label, nil)
	m.Registerer().MustRegister(funcCollector{descs: []*prometheus.Desc{state, calls, retries, rejected, opened}, collect: func(ch chan<- prometheus.Metric) {
		for name, p := range policies {
			breaker := 0.0
			switch p.BreakerState() {
			case "half-open":
				breaker = 1
			case "open":
				breaker = 2
			}
			st := p.Stats()
			ch <- prometheus.MustNewConstMetric(state, prometheus.GaugeValue, breaker, name)
			ch <- prometheus.MustNewConstMetric(calls, prometheus.CounterValue, float64(st.Calls), name)
			ch <- prometheus.MustNewConstMetric(retries, prometheus.CounterValue, float64(st.Retries), name)
			ch <- prometheus.MustNewConstMetric(rejected, prometheus.CounterValue, float64(st.Rejected), name)
			ch <- prometheus.MustNewConstMetric(opened, prometheus.CounterValue, float64(st.BreakerOpened), name)
		}
	}})
}

// funcCollector reports values read when Prometheus scrapes.
type funcCollector struct {
	descs   []*prometheus.Desc
	collect func(ch chan<- prometheus.Metric)
}

func (c funcCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c funcCollector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// meterSagas reports the saga instances by definition and status.
func meterSagas(m *telemetry.Metrics, e *saga.Engine) {
	if m == nil {
		return // metrics off
	}
	desc := prometheus.NewDesc("saga_instances", "Saga instances in this service's database, by saga and status (running, compensating, completed, compensated, needs_attention).", []string{"saga", "status"}, nil)
	m.Registerer().MustRegister(funcCollector{descs: []*prometheus.Desc{desc}, collect: func(ch chan<- prometheus.Metric) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		counts, err := e.Count(ctx)
		if err != nil {
			return
		}
		for name, by := range counts {
			for status, n := range by {
				ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(n), name, string(status))
			}
		}
	}})
}

// meterAdmission exports order admission's limit, the orders in flight
// under it and the orders it refused.
func meterAdmission(m *telemetry.Metrics, a *order.Admission) {
	if m == nil {
		return // metrics off
	}
	limit := prometheus.NewDesc("order_admission_limit", "How many orders may be between acceptance and verdict at once: the adaptive limit, following the orders' time to their verdict.", nil, nil)
	inFlight := prometheus.NewDesc("order_admission_in_flight", "Orders admitted whose saga has not ended.", nil, nil)
	bound := prometheus.NewDesc("order_admission_time_bound", "While orders are refused, the most orders admitted in flight: R + 2√R (room for bursts), R being the orders the shop finishes in twice their calm time: orders ended a second, now or in the recent calm seconds as busy as now, whichever is more, times twice their time in those seconds (where no calm second was as busy, at least the adaptive limit first refused at); 0 when lifted.", nil, nil)
	refused := prometheus.NewDesc("orders_refused_total", "New orders refused (503 with Retry-After) because as many were in flight as the limit or the time bound allows.", nil, nil)
	m.Registerer().MustRegister(funcCollector{descs: []*prometheus.Desc{limit, inFlight, bound, refused}, collect: func(ch chan<- prometheus.Metric) {
		st := a.Stats()
		ch <- prometheus.MustNewConstMetric(limit, prometheus.GaugeValue, float64(st.Limit))
		ch <- prometheus.MustNewConstMetric(bound, prometheus.GaugeValue, float64(st.Bound))
		ch <- prometheus.MustNewConstMetric(inFlight, prometheus.GaugeValue, float64(st.InFlight))
		ch <- prometheus.MustNewConstMetric(refused, prometheus.CounterValue, float64(st.Refused))
	}})
}

// meterServerLimit exports the process's server limit: the limit, the
// work in flight and queued under it, the level below which work is
// refused now, and the refusals by priority.
func meterServerLimit(m *telemetry.Metrics, l *resilience.ServerLimit) {
	if m == nil {
		return // metrics off
	}
	limit := prometheus.NewDesc("server_limit", "How many requests, calls and messages this process works on at once: the adaptive limit, following their time.", nil, nil)
	inFlight := prometheus.NewDesc("server_limit_in_flight", "Requests, calls and messages in flight under the server limit.", nil, nil)
	queued := prometheus.NewDesc("server_limit_queued", "Requests, calls and messages waiting for a permit of the server limit.", nil, nil)
	waiting := prometheus.NewDesc("server_limit_messages_waiting", "Messages waiting for room in the server limit's queue (a message is never refused: while they wait, the process takes no more from the broker).", nil, nil)
	threshold := prometheus.NewDesc("server_limit_rejection_threshold", "The priority level (0-499: new work 100-199, default 200-299, admitted work 300-399) below which the server limit refuses work now; 0 while it refuses none for its priority.", nil, nil)
	refused := prometheus.NewDesc("server_limit_refused_total", "Requests and calls the server limit refused (503 or UNAVAILABLE, with Retry-After), by priority (new, default, admitted, and the others of failsafe-go's five).", []string{"priority"}, nil)
	admitted := prometheus.NewDesc("server_limit_admitted_total", "Requests, calls and messages the server limit let in, by the priority they carried (new, default, admitted, and the others of failsafe-go's five): the mix of work this process gets.", []string{"priority"}, nil)
	names := []string{"very_low", "new", "default", "admitted", "very_high"}
	m.Registerer().MustRegister(funcCollector{descs: []*prometheus.Desc{limit, inFlight, queued, waiting, threshold, refused, admitted}, collect: func(ch chan<- prometheus.Metric) {
		st := l.Stats()
		ch <- prometheus.MustNewConstMetric(limit, prometheus.GaugeValue, float64(st.Limit))
		ch <- prometheus.MustNewConstMetric(inFlight, prometheus.GaugeValue, float64(st.InFlight))
		ch <- prometheus.MustNewConstMetric(queued, prometheus.GaugeValue, float64(st.Queued))
		ch <- prometheus.MustNewConstMetric(waiting, prometheus.GaugeValue, float64(st.MessagesWaiting))
		ch <- prometheus.MustNewConstMetric(threshold, prometheus.GaugeValue, float64(st.Threshold))
		for i, name := range names {
			ch <- prometheus.MustNewConstMetric(refused, prometheus.CounterValue, float64(st.Refused[i]), name)
			ch <- prometheus.MustNewConstMetric(admitted, prometheus.CounterValue, float64(st.Admitted[i]), name)
		}
	}})
}

// sagaHooks are the engine's hooks that count and time its instances.
type sagaHooks struct {
	recorded func(in *saga.Instance, events []saga.Event)
	ended    func(in *saga.Instance)
}

// meterSagaEvents returns the hooks that count sagas started and ended
// (by status, with their duration), each step's outcomes and the orders'
// verdicts; hooks that do nothing with metrics off.
func meterSagaEvents(m *telemetry.Metrics) sagaHooks {
	if m == nil {
		return sagaHooks{recorded: func(*saga.Instance, []saga.Event) {}, ended: func(*saga.Instance) {}}
	}
	orderEnded := meterOrders(m)
	started := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "saga_started_total", Help: "Saga instances this process started, by saga.",
	}, []string{"saga"})
	ended := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "saga_ended_total", Help: "Saga instances this process ended, by saga and status (completed, compensated, needs_attention).",
	}, []string{"saga", "status"})
	took := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "saga_duration_seconds", Help: "Time from a saga instance's start to its end, by saga and status.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"saga", "status"})
	steps := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "saga_step_events_total", Help: "What happened to saga steps, by saga, step and event: sent, succeeded, failed, timed_out, undo_sent, undone, undo_failed, aborted, ignored (a late or duplicate reply), resend_rationed (the resend budget was spent: the step gave up, or its compensation waits).",
	}, []string{"saga", "step", "event"})
	m.Registerer().MustRegister(started, ended, took, steps)
	return sagaHooks{
		recorded: func(in *saga.Instance, events []saga.Event) {
			for _, ev := range events {
				switch {
				case ev.Kind == saga.EventStarted:
					started.WithLabelValues(in.Saga).Inc()
				case ev.Step != "":
					steps.WithLabelValues(in.Saga, ev.Step, string(ev.Kind)).Inc()
				}
			}
		},
		ended: func(in *saga.Instance) {
			ended.WithLabelValues(in.Saga, string(in.Status)).Inc()
			took.WithLabelValues(in.Saga, string(in.Status)).Observe(in.UpdatedAt.Sub(in.CreatedAt).Seconds())
			orderEnded(in)
		},
	}
}

// meterInboxes reports, at every scrape, the messages this process's
// inboxes skipped as applied before.
func meterInboxes(m *telemetry.Metrics) {
	if m == nil {
		return
	}
	desc := prometheus.NewDesc("inbox_duplicates_skipped_total", "Messages an idempotent consumer of this process skipped because it had applied them before (a redelivery, a publish repeated by a relay), by consumer group.", []string{"group"}, nil)
	m.Registerer().MustRegister(funcCollector{descs: []*prometheus.Desc{desc}, collect: func(ch chan<- prometheus.Metric) {
		for group, n := range outbox.DuplicatesSkipped() {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(n), group)
		}
	}})
}

// meterOrders returns the hook, for the saga engine's Ended, that counts
// the orders placed by their verdict and times the confirmed ones from
// creation to confirmation.
func meterOrders(m *telemetry.Metrics) func(in *saga.Instance) {
	ended := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orders_total",
		Help: "Orders that got their verdict in this process, by outcome: confirmed, rejected (out of stock, card declined, a step that got no answer), cancelled (by the customer while it was placed) or needs_attention.",
	}, []string{"outcome"})
	confirm := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "order_confirm_duration_seconds",
		Help:    "Time from an order's creation to its confirmation (every step of its saga done).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
	m.Registerer().MustRegister(ended, confirm)
	for _, o := range []string{"confirmed", "rejected", "cancelled", "needs_attention"} {
		ended.WithLabelValues(o)
	}
	return func(in *saga.Instance) {
		if in.Saga != order.SagaPlaceOrder {
			return
		}
		switch {
		case in.Status == saga.Completed:
			ended.WithLabelValues("confirmed").Inc()
			confirm.Observe(in.UpdatedAt.Sub(in.CreatedAt).Seconds())
		case in.Status == saga.NeedsAttention:
			ended.WithLabelValues("needs_attention").Inc()
		case in.Reason == order.CancelledByCustomer:
			ended.WithLabelValues("cancelled").Inc()
		default:
			ended.WithLabelValues("rejected").Inc()
		}
	}
}

// meterGateway reports what the gateway did besides forwarding.
func meterGateway(m *telemetry.Metrics, g *gateway.Gateway, live *gateway.Live) {
	if m == nil {
		return // metrics off
	}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	limited := d("gateway_rate_limited_total", "Requests answered 429: over their address's or user's rate.")
	shed := d("gateway_shed_total", "Requests answered 503 because the gateway had as many in flight as it takes.")
	throttled := d("gateway_throttled_total", "New orders answered 503 at the gateway: those order-service had said it had no room for, and those refused in the measure it had been refusing them (client-side adaptive throttling).")
	fallbacks := d("gateway_fallbacks_total", "Requests answered from the last good copy of the catalogue while inventory-service could not answer.")
	retries := d("gateway_retries_total", "Attempts sent again to another instance (requests that never arrived, or idempotent ones).")
	refused := d("gateway_retries_refused_total", "Retries the retry budget did not allow.")
	wsOpen := d("gateway_websockets", "WebSockets open now.")
	wsAccepted := d("gateway_websockets_accepted_total", "WebSockets authenticated.")
	wsRefused := d("gateway_websockets_refused_total", "WebSockets refused: not authenticated, or over a cap (per user, per address, in all).")
	wsSlow := d("gateway_websockets_too_slow_total", "WebSockets dropped because they did not read their frames fast enough.")
	wsFrames := d("gateway_websocket_events_total", "Order events sent over WebSockets.")
	m.Registerer().MustRegister(funcCollector{descs: []*prometheus.Desc{limited, shed, throttled, fallbacks, retries, refused, wsOpen, wsAccepted, wsRefused, wsSlow, wsFrames}, collect: func(ch chan<- prometheus.Metric) {
		st, ls := g.Stats(), live.Stats()
		for _, v := range []struct {
			d *prometheus.Desc
			n int64
		}{{limited, st.RateLimited}, {shed, st.Shed}, {throttled, st.Throttled}, {fallbacks, st.Fallbacks}, {retries, st.Retries}, {refused, st.RetriesRefused},
			{wsAccepted, ls.Accepted}, {wsRefused, ls.Refused}, {wsSlow, ls.Slow}, {wsFrames, ls.Frames}} {
			ch <- prometheus.MustNewConstMetric(v.d, prometheus.CounterValue, float64(v.n))
		}
		ch <- prometheus.MustNewConstMetric(wsOpen, prometheus.GaugeValue, float64(ls.Open))
	}})
}

// meterRegistry reports the instances the registry knows, by service.
func meterRegistry(m *telemetry.Metrics, reg *registry.Registry) {
	if m == nil {
		return // metrics off
	}
	desc := prometheus.NewDesc("registry_instances", "Instances in lookups, by service (leased and passing their readiness probes).", []string{"service"}, nil)
	m.Registerer().MustRegister(funcCollector{descs: []*prometheus.Desc{desc}, collect: func(ch chan<- prometheus.Metric) {
		for _, v := range reg.Catalog().Services {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(len(v.Instances)), v.Service)
		}
	}})
}

// meterDB reports the group commit of a one-writer database (SQLite):
// transactions and the commits that carried them, so their ratio is the
// mean group size.
func meterDB(m *telemetry.Metrics, db *sqldb.DB) {
	if m == nil {
		return // metrics off
	}
	m.Registerer().MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sqldb_transactions_total", Help: "Write transactions this process ran on its database (SQLite's group commit counts each)."},
			func() float64 { tx, _ := db.GroupStats(); return float64(tx) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sqldb_commits_total", Help: "Commits that carried them: transactions per commit is the mean size of a group commit."},
			func() float64 { _, c := db.GroupStats(); return float64(c) }),
	)
}

// meterBroker reports the embedded NATS server's own figures: traffic,
// connections, each stream's contents and each consumer group's backlog.
func meterBroker(m *telemetry.Metrics, ns *server.Server) {
	if m == nil {
		return // metrics off
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	inMsgs := d("nats_server_received_messages_total", "Messages the broker received from clients.")
	outMsgs := d("nats_server_sent_messages_total", "Messages the broker sent to clients.")
	inBytes := d("nats_server_received_bytes_total", "Bytes the broker received from clients.")
	outBytes := d("nats_server_sent_bytes_total", "Bytes the broker sent to clients.")
	conns := d("nats_server_connections", "Clients connected now.")
	streamMsgs := d("jetstream_stream_messages", "Messages a stream (a topic) holds.", "stream")
	streamBytes := d("jetstream_stream_bytes", "Bytes a stream (a topic) holds.", "stream")
	pending := d("jetstream_consumer_pending_messages", "Messages of a stream its consumer (a group) has not been delivered yet.", "stream", "consumer")
	ackPending := d("jetstream_consumer_ack_pending_messages", "Messages delivered to a consumer (a group) and not acknowledged yet.", "stream", "consumer")
	redelivered := d("jetstream_consumer_redelivered_messages", "Messages a consumer (a group) has had delivered more than once, of those outstanding.", "stream", "consumer")
	m.Registerer().MustRegister(funcCollector{
		descs: []*prometheus.Desc{inMsgs, outMsgs, inBytes, outBytes, conns, streamMsgs, streamBytes, pending, ackPending, redelivered},
		collect: func(ch chan<- prometheus.Metric) {
			if v, err := ns.Varz(nil); err == nil {
				ch <- prometheus.MustNewConstMetric(inMsgs, prometheus.CounterValue, float64(v.InMsgs))
				ch <- prometheus.MustNewConstMetric(outMsgs, prometheus.CounterValue, float64(v.OutMsgs))
				ch <- prometheus.MustNewConstMetric(inBytes, prometheus.CounterValue, float64(v.InBytes))
				ch <- prometheus.MustNewConstMetric(outBytes, prometheus.CounterValue, float64(v.OutBytes))
				ch <- prometheus.MustNewConstMetric(conns, prometheus.GaugeValue, float64(v.Connections))
			}
			js, err := ns.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
			if err != nil {
				return
			}
			for _, acc := range js.AccountDetails {
				for _, st := range acc.Streams {
					ch <- prometheus.MustNewConstMetric(streamMsgs, prometheus.GaugeValue, float64(st.State.Msgs), st.Name)
					ch <- prometheus.MustNewConstMetric(streamBytes, prometheus.GaugeValue, float64(st.State.Bytes), st.Name)
					for _, c := range st.Consumer {
						ch <- prometheus.MustNewConstMetric(pending, prometheus.GaugeValue, float64(c.NumPending), st.Name, c.Name)
						ch <- prometheus.MustNewConstMetric(ackPending, prometheus.GaugeValue, float64(c.NumAckPending), st.Name, c.Name)
						ch <- prometheus.MustNewConstMetric(redelivered, prometheus.GaugeValue, float64(c.NumRedelivered), st.Name, c.Name)
					}
				}
			}
		},
	})
}
