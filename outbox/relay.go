package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/junction-go/junction/bus"
	"github.com/junction-go/junction/sqldb"
)

// RelayConfig tunes a relay; the zero value is usable.
type RelayConfig struct {
	// Holder names this relay in the lease (an instance id).
	Holder string
	// Batch is the most messages published per round; 256 when zero.
	Batch int
	// Poll is how often the relay looks for messages it was not told of;
	// 200 ms when zero.
	Poll time.Duration
	// Lease is how long a relay holds the outbox after its last renewal;
	// 10 s when zero.
	Lease time.Duration
	// PublishTimeout bounds one round's publishing: a topic whose
	// Publish has not returned by then fails the round (its rows stay for
	// the next), so a broker that never answers, or an acknowledgement
	// lost on the way, cannot hold the relay and its lease for ever. The
	// lease when zero.
	PublishTimeout time.Duration
	// Retention is how long sent messages are kept (for audits and
	// re-publishing after a broker loses data); 1 h when zero.
	Retention time.Duration
	// Failpoint, when set, is called at named points of a round
	// ("relay.afterPublish": published, not yet marked), so fault tests
	// can crash the process exactly there. Nil in production.
	Failpoint func(point string)
}

// Relay publishes an outbox's messages. Several relays may run on one
// database (replicas of a service); a lease lets one publish at a time, and
// its fencing token keeps a relay that lost the lease from marking rows.
type Relay struct {
	o   *Outbox
	pub bus.Publisher
	cfg RelayConfig
	log *slog.Logger

	token int64 // fencing token of the lease this relay holds, 0 if none
	// renewed is when this relay last took or renewed the lease.
	renewed time.Time
}

// NewRelay returns a relay of o publishing with pub.
func NewRelay(o *Outbox, pub bus.Publisher, cfg RelayConfig, log *slog.Logger) *Relay {
	if cfg.Holder == "" {
		cfg.Holder = bus.NewID()
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 256
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 10 * time.Second
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = cfg.Lease
	}
	if cfg.Retention <= 0 {
		cfg.Retention = time.Hour
	}
	return &Relay{o: o, pub: pub, cfg: cfg, log: log}
}

// Run publishes until ctx is done, then returns nil. Failures (broker or
// database down) are logged and retried with backoff; nothing is skipped,
// so messages stay in order.
func (r *Relay) Run(ctx context.Context) error {
	backoff := r.cfg.Poll
	lastPrune := time.Time{}
	for {
		n, err := r.Once(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := r.cfg.Poll
		switch {
		case err != nil:
			r.log.WarnContext(ctx, "outbox relay round failed", "err", err)
			wait, backoff = backoff, min(backoff*2, 10*time.Second)
		case n == r.cfg.Batch:
			wait, backoff = 0, r.cfg.Poll // more are waiting
		default:
			backoff = r.cfg.Poll
		}
		if time.Since(lastPrune) > time.Minute && r.token != 0 {
			if _, err := r.Prune(ctx); err != nil {
				r.log.WarnContext(ctx, "outbox prune failed", "err", err)
			}
			lastPrune = time.Now()
		}
		if wait == 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-r.o.notify:
			t.Stop()
		case <-t.C:
		}
	}
}

// Once takes or renews the lease and, holding it, publishes one batch; it
// returns how many messages it published and marked.
func (r *Relay) Once(ctx context.Context) (int, error) {
	held, err := r.acquire(ctx)
	if err != nil || !held {
		return 0, err
	}
	rows, err := r.pending(ctx)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	// Each topic's messages go out in seq order in one Publish; the topics
	// go out at once, so a round costs one round trip to the broker, not
	// one per topic run. A topic whose Publish failed keeps all its rows
	// of the round for the next (a repeat is harmless: consumers are
	// idempotent; its order is kept), the others are marked.
	var topics []string
	byTopic := map[string][]row{}
	for _, rw := range rows {
		if _, ok := byTopic[rw.topic]; !ok {
			topics = append(topics, rw.topic)
		}
		byTopic[rw.topic] = append(byTopic[rw.topic], rw)
	}
	errs := make([]error, len(topics))
	pctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i, topic := range topics {
		wg.Go(func() {
			msgs := make([]*bus.Message, 0, len(byTopic[topic]))
			for _, rw := range byTopic[topic] {
				msgs = append(msgs, rw.msg)
			}
			errs[i] = r.pub.Publish(pctx, topic, msgs...)
		})
	}
	wg.Wait()
	if r.cfg.Failpoint != nil {
		r.cfg.Failpoint("relay.afterPublish")
	}
	sent := rows
	var failed error
	if err := errors.Join(errs...); err != nil {
		sent = sent[:0:0]
		for i, topic := range topics {
			if errs[i] == nil {
				sent = append(sent, byTopic[topic]...)
				continue
			}
			first := byTopic[topic][0]
			r.recordFailure(ctx, first.seq, errs[i])
			if failed == nil {
				failed = fmt.Errorf("publish to %s: %w", topic, errs[i])
			}
		}
	}
	if err := r.markSent(ctx, sent); err != nil {
		return 0, err
	}
	return len(sent), failed
}

type row struct {
	seq   int64
	topic string
	msg   *bus.Message
}

func (r *Relay) pending(ctx context.Context) ([]row, error) {
	q := r.o.db.Dialect.Rebind(`SELECT seq, topic, headers, body FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT ?`)
	rs, err := r.o.db.QueryContext(ctx, q, r.cfg.Batch)
	if err != nil {
		return nil, fmt.Errorf("outbox: read: %w", err)
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var (
			rw      row
			headers string
			body    []byte
		)
		if err := rs.Scan(&rw.seq, &rw.topic, &headers, &body); err != nil {
			return nil, fmt.Errorf("outbox: read: %w", err)
		}
		m, err := decodeRow(headers, body)
		if err != nil {
			return nil, fmt.Errorf("outbox: row %d: %w", rw.seq, err)
		}
		rw.msg = m
		out = append(out, rw)
	}
	return out, rs.Err()
}

// ErrLeaseLost is returned when a relay finds at marking time that another
// relay took the lease: it published, but marks nothing.
var ErrLeaseLost = errors.New("outbox: lease lost to another relay")

// markSent marks rows sent if this relay still holds the lease with its
// token.
func (r *Relay) markSent(ctx context.Context, rows []row) error {
	if len(rows) == 0 {
		return nil
	}
	args := []any{time.Now().UnixMilli(), r.cfg.Holder, r.token}
	for _, rw := range rows {
		args = append(args, rw.seq)
	}
	q := r.o.db.Dialect.Rebind(`UPDATE outbox SET sent_at = ?
		WHERE EXISTS (SELECT 1 FROM outbox_lease WHERE name = 'relay' AND holder = ? AND token = ?)
		AND seq IN (` + sqldb.Marks(len(rows)) + `)`)
	res, err := r.o.db.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("outbox: mark sent: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		r.token = 0
		return ErrLeaseLost
	}
	return nil
}

func (r *Relay) recordFailure(ctx context.Context, seq int64, cause error) {
	q := r.o.db.Dialect.Rebind(`UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?`)
	_, _ = r.o.db.ExecContext(ctx, q, truncate(cause.Error(), 512), seq)
}

// acquire takes the lease when it is free or lapsed, or renews it when this
// relay holds it. Taking it over increments the fencing token.
func (r *Relay) acquire(ctx context.Context) (bool, error) {
	// Renewing costs a write transaction; while well inside the lease it
	// is skipped. That is safe: marking is fenced by the token, so a relay
	// that lost the lease while it was not looking marks nothing.
	if r.token != 0 && time.Since(r.renewed) < r.cfg.Lease/3 {
		return true, nil
	}
	start := time.Now()
	now := start.UnixMilli()
	expires := now + r.cfg.Lease.Milliseconds()
	held := false
	err := r.o.db.InTx(ctx, func(tx *sql.Tx) error {
		var holder string
		var token, until int64
		err := tx.QueryRowContext(ctx, `SELECT holder, token, expires_at FROM outbox_lease WHERE name = 'relay'`).Scan(&holder, &token, &until)
		// Every write below is conditional on what was read, so two relays
		// racing (on a database that does not serialise them) cannot both
		// win: the loser changes no row and does not hold the lease.
		var res sql.Result
		next := r.token
		switch {
		case errors.Is(err, sql.ErrNoRows):
			res, err = tx.ExecContext(ctx, r.o.db.Dialect.Rebind(`INSERT INTO outbox_lease (name, holder, token, expires_at) VALUES ('relay', ?, 1, ?) ON CONFLICT (name) DO NOTHING`), r.cfg.Holder, expires)
			next = 1
		case err != nil:
			return err
		case holder == r.cfg.Holder && token == r.token:
			res, err = tx.ExecContext(ctx, r.o.db.Dialect.Rebind(`UPDATE outbox_lease SET expires_at = ? WHERE name = 'relay' AND token = ?`), expires, token)
		case until < now || holder == r.cfg.Holder:
			// Lapsed, or held by an earlier run of this same instance,
			// which is gone: take it over under a new token.
			res, err = tx.ExecContext(ctx, r.o.db.Dialect.Rebind(`UPDATE outbox_lease SET holder = ?, token = ?, expires_at = ? WHERE name = 'relay' AND token = ?`), r.cfg.Holder, token+1, expires, token)
			next = token + 1
		default:
			r.token = 0 // another relay holds it
			return nil
		}
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			r.token, held, r.renewed = next, true, start
		} else {
			r.token = 0
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("outbox: lease: %w", err)
	}
	return held, nil
}

// Prune deletes sent messages older than the retention and returns how
// many.
func (r *Relay) Prune(ctx context.Context) (int64, error) {
	cutoff := time.Now().Add(-r.cfg.Retention).UnixMilli()
	res, err := r.o.db.ExecContext(ctx, r.o.db.Dialect.Rebind(`DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?`), cutoff)
	if err != nil {
		return 0, fmt.Errorf("outbox: prune: %w", err)
	}
	return res.RowsAffected()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
