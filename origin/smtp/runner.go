package smtp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/outpost-proxy/outpost/internal/diskspace"
	"github.com/outpost-proxy/outpost/origin/mailstore"
)

// DeliveryError is a failed delivery to one recipient, with the reply that explains it.
type DeliveryError struct {
	// Permanent failures are not retried (5xx); the others are (4xx, network errors).
	Permanent bool
	// Status is the RFC 3463 code, e.g. "5.1.1".
	Status string
	// Reply is the diagnostic, e.g. "550 5.1.1 no such user".
	Reply string
}

// Error returns the diagnostic reply.
func (e *DeliveryError) Error() string { return e.Reply }

// tempError wraps any error as a temporary delivery failure.
func tempError(status string, err error) *DeliveryError {
	return &DeliveryError{Status: status, Reply: err.Error()}
}

// asDeliveryError classifies err: DeliveryErrors stay, anything else is temporary (4.4.0).
func asDeliveryError(err error) *DeliveryError {
	var de *DeliveryError
	if errors.As(err, &de) {
		return de
	}
	return tempError("4.4.0", err)
}

// Name is the component name.
func (q *Queue) Name() string { return "mail-queue" }

// Listen does nothing: the queue has no listeners.
func (q *Queue) Listen(context.Context) error { return nil }

// Addrs is empty: the queue has no listeners.
func (q *Queue) Addrs() []string { return nil }

// Serve runs deliveries until Shutdown: due recipients are attempted by up to Workers
// goroutines; the runner sleeps until the next retry, a new message or a flush.
func (q *Queue) Serve(ctx context.Context) error {
	defer close(q.served)
	sem := make(chan struct{}, q.opts.Workers)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := q.dispatch(sem)
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(q.opts.Now()), 10*time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-q.stop:
			return nil
		case <-ctx.Done():
			return nil
		case <-q.kick:
		case <-timer.C:
		}
	}
}

// dispatch starts a worker for each idle message with a due recipient (as long as workers are
// free) and returns the earliest future due time.
func (q *Queue) dispatch(sem chan struct{}) time.Time {
	now := q.opts.Now()
	var next time.Time
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return next
	}
	for _, e := range q.entries {
		if e.busy {
			continue
		}
		due, when := e.env.due(now)
		if !due {
			if !when.IsZero() && (next.IsZero() || when.Before(next)) {
				next = when
			}
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			return time.Time{} // all workers busy: a finishing worker wakes the runner
		}
		e.busy = true
		q.workers.Add(1)
		go func() {
			defer func() { <-sem; q.workers.Done(); q.wake() }()
			q.attempt(e)
		}()
	}
	return next
}

// due reports whether some recipient should be attempted at now, else when the next one is.
func (e *Envelope) due(now time.Time) (bool, time.Time) {
	var next time.Time
	for _, r := range e.Rcpts {
		pending := r.State == StateQueued || r.State == StateFailed && !r.Notified // a bounce is owed
		switch {
		case !pending:
		case !r.Next.After(now):
			return true, now
		case next.IsZero() || r.Next.Before(next):
			next = r.Next
		}
	}
	return false, next
}

// attempt delivers the due recipients of one message, sends bounces for the failed ones and
// persists (or removes) the envelope.
func (q *Queue) attempt(e *entry) {
	q.mu.Lock()
	env := copyEnvelope(e.env)
	q.mu.Unlock()
	now := q.opts.Now()
	var local, remote []*Recipient
	for _, r := range env.Rcpts {
		if r.State == StateQueued && !r.Next.After(now) {
			if r.Local {
				local = append(local, r)
			} else {
				remote = append(remote, r)
			}
		}
	}
	for _, r := range local {
		q.settle(&env, r, q.deliverLocal(&env, r), now)
	}
	for domain, rs := range byDomain(remote) {
		results := q.relay(&env, domain, rs)
		for _, r := range rs {
			q.settle(&env, r, results[r.Addr], now)
		}
	}
	q.bounce(&env, now)
	q.finish(e, &env)
}

// deliverLocal puts the message into a local mailbox, idempotently: the Maildir key is derived
// from the queue id and recipient, so a retry after a crash does not deliver twice.
func (q *Queue) deliverLocal(env *Envelope, r *Recipient) error {
	u, ok := q.store.Directory().Lookup(r.Addr)
	if !ok {
		return &DeliveryError{Permanent: true, Status: "5.1.1", Reply: "550 5.1.1 <" + r.Addr + ">: no such user here"}
	}
	body, err := q.open(env.ID)
	if err != nil {
		return tempError("4.3.0", err)
	}
	defer body.Close()
	key := env.ID + "." + rcptIndex(env, r) + ".outpost"
	if _, err := q.store.Deliver(u, key, body); err != nil {
		if diskspace.IsFull(err) {
			return tempError("4.3.1", err) // mailbox disk full: retried, as any 4xx
		}
		return tempError("4.3.0", err)
	}
	if testHookAfterLocalDelivery != nil {
		testHookAfterLocalDelivery()
	}
	return nil
}

// testHookAfterLocalDelivery runs after a mailbox delivery, before the queue records it (the
// durability test crashes the process there).
var testHookAfterLocalDelivery func()

// rcptIndex is the position of r among the message's recipients.
func rcptIndex(env *Envelope, r *Recipient) string {
	for i, x := range env.Rcpts {
		if x == r {
			return fmt.Sprint(i)
		}
	}
	return "x"
}

// byDomain groups recipients by their domain (one SMTP transaction per destination).
func byDomain(rs []*Recipient) map[string][]*Recipient {
	out := map[string][]*Recipient{}
	for _, r := range rs {
		_, d, _ := strings.Cut(r.Addr, "@")
		d = strings.ToLower(d)
		out[d] = append(out[d], r)
	}
	return out
}

// relay hands recipients of one domain to the relay client; it returns per-address results.
func (q *Queue) relay(env *Envelope, domain string, rs []*Recipient) map[string]error {
	out := map[string]error{}
	if q.opts.Relay == nil {
		for _, r := range rs {
			out[r.Addr] = &DeliveryError{Permanent: true, Status: "5.4.4", Reply: "no relay client configured"}
		}
		return out
	}
	addrs := make([]string, len(rs))
	for i, r := range rs {
		addrs[i] = r.Addr
	}
	return q.opts.Relay.Relay(q.ctx, RelayMessage{
		Helo: env.Host, From: env.From, Domain: domain, Rcpts: addrs,
		Open: func() (ReadCloser, error) { return q.open(env.ID) },
	})
}

// settle records one attempt's outcome: delivered, failed for good, or retried later with
// exponential back-off until the lifetime runs out.
func (q *Queue) settle(env *Envelope, r *Recipient, err error, now time.Time) {
	r.Attempts++
	if err == nil {
		r.State, r.Status, r.LastError = StateDelivered, "2.0.0", ""
		q.log.Info("delivered", "id", env.ID, "rcpt", r.Addr, "local", r.Local, "attempts", r.Attempts)
		q.count("delivered")
		return
	}
	de := asDeliveryError(err)
	r.LastError, r.Status = de.Reply, de.Status
	if de.Permanent {
		r.State = StateFailed
		q.log.Warn("delivery failed", "id", env.ID, "rcpt", r.Addr, "err", de.Reply)
		q.count("failed")
		return
	}
	if now.Sub(env.Arrived) >= q.opts.Lifetime {
		r.State, r.Status = StateFailed, "4.4.7"
		r.LastError = de.Reply + " (gave up: message expired after " + q.opts.Lifetime.String() + " in the queue)"
		q.log.Warn("delivery expired", "id", env.ID, "rcpt", r.Addr, "err", de.Reply)
		q.count("expired")
		return
	}
	r.Next = now.Add(backoff(q.opts.RetryInitial, q.opts.RetryMax, r.Attempts))
	q.log.Info("delivery deferred", "id", env.ID, "rcpt", r.Addr, "err", de.Reply, "retry_at", r.Next)
	q.count("deferred")
}

// backoff is initial·2^(attempts-1), capped at maxDelay.
func backoff(initial, maxDelay time.Duration, attempts int) time.Duration {
	d := initial
	for i := 1; i < attempts && d < maxDelay; i++ {
		d *= 2
	}
	return min(d, maxDelay)
}

// bounce queues one delivery status notification for the failed, not yet notified recipients.
// Bounces are never sent for bounces or for messages with a null reverse-path.
func (q *Queue) bounce(env *Envelope, now time.Time) {
	var failed []*Recipient
	for _, r := range env.Rcpts {
		if r.State == StateFailed && !r.Notified {
			failed = append(failed, r)
		}
	}
	if len(failed) == 0 {
		return
	}
	if env.DSN || env.From == "" {
		for _, r := range failed {
			r.Notified = true
		}
		return
	}
	if err := q.sendDSN(env, failed, now); err != nil {
		q.log.Error("queue: cannot queue bounce", "id", env.ID, "err", err)
		for _, r := range failed {
			r.Next = now.Add(q.opts.RetryInitial) // try the bounce again later, not in a loop
		}
		return
	}
	for _, r := range failed {
		r.Notified = true
	}
}

// finish stores the envelope's new state, or removes the message when every recipient is done.
func (q *Queue) finish(e *entry, env *Envelope) {
	var err error
	if env.done() {
		err = q.remove(env.ID)
	} else {
		err = q.persist(env)
	}
	if err != nil {
		q.log.Error("queue: cannot record delivery state", "id", env.ID, "err", err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	e.busy = false
	if env.done() && err == nil {
		delete(q.entries, env.ID)
		return
	}
	*e.env = *env
}

// count increments the outcome counter.
func (q *Queue) count(outcome string) {
	if q.m != nil {
		q.m.deliveries.WithLabelValues(outcome).Inc()
	}
}

// Shutdown stops dispatching, waits for running deliveries until ctx ends, then cancels them.
func (q *Queue) Shutdown(ctx context.Context) error {
	q.mu.Lock()
	already := q.stopped
	q.stopped = true
	q.mu.Unlock()
	if !already {
		close(q.stop)
	}
	done := make(chan struct{})
	go func() { q.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		q.cancel()
		<-done
	}
	q.cancel()
	return nil
}

// isLocal reports whether addr's domain is delivered locally by host.
func (q *Queue) isLocal(host, addr string) bool {
	_, d, _ := strings.Cut(addr, "@")
	return q.opts.LocalDomains[host][strings.ToLower(d)]
}

// Store returns the mail store the queue delivers into.
func (q *Queue) Store() *mailstore.Store { return q.store }
