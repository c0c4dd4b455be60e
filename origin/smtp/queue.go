package smtp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-proxy/outpost/internal/diskspace"
	"github.com/outpost-proxy/outpost/origin/mailstore"
	"github.com/prometheus/client_golang/prometheus"
)

// Recipient states.
const (
	StateQueued    = "queued"    // waiting for (another) delivery attempt
	StateDelivered = "delivered" // accepted by the mailbox or the next hop
	StateFailed    = "failed"    // permanently failed or expired; a bounce is (or was) due
)

// Envelope is a queued message's durable state: its reverse-path and per-recipient progress.
// It is stored as <id>.json beside the message <id>.eml; its presence commits the message.
type Envelope struct {
	ID string `json:"id"`
	// From is the reverse-path; empty for bounces (RFC 5321 4.5.5).
	From string `json:"from"`
	// Host is the hostname of the SMTP host that accepted the message.
	Host string `json:"host"`
	// Arrived is when the message was accepted; the queue lifetime counts from it.
	Arrived time.Time `json:"arrived"`
	// DSN marks a delivery status notification, which never causes another one.
	DSN bool `json:"dsn,omitempty"`
	// Size is the stored message size in octets.
	Size  int64        `json:"size"`
	Rcpts []*Recipient `json:"rcpts"`
}

// Recipient is one forward-path and its delivery state.
type Recipient struct {
	Addr string `json:"addr"`
	// Local recipients go to a mailbox of this store; the others are relayed by MX.
	Local    bool      `json:"local"`
	State    string    `json:"state"`
	Attempts int       `json:"attempts"`
	Next     time.Time `json:"next"`
	// LastError is the latest failure, as the remote side (or we) said it.
	LastError string `json:"last_error,omitempty"`
	// Status is the RFC 3463 status code of the final outcome, e.g. "5.1.1".
	Status string `json:"status,omitempty"`
	// Notified records that the sender got a bounce for this recipient.
	Notified bool `json:"notified,omitempty"`
}

// done reports whether nothing is left to do for every recipient.
func (e *Envelope) done() bool {
	for _, r := range e.Rcpts {
		if r.State == StateQueued || (r.State == StateFailed && !r.Notified) {
			return false
		}
	}
	return true
}

// QueueOptions configure a Queue.
type QueueOptions struct {
	// Dir is the queue directory.
	Dir string
	// Lifetime is how long a message may wait before it is bounced.
	Lifetime time.Duration
	// RetryInitial and RetryMax shape the exponential back-off.
	RetryInitial, RetryMax time.Duration
	// Workers bounds concurrent deliveries.
	Workers int
	// Relay delivers to non-local recipients.
	Relay Relayer
	// LocalDomains maps each host name to the domains it delivers locally (bounces use it to
	// route the notification).
	LocalDomains map[string]map[string]bool
	// Logger receives delivery logs.
	Logger *slog.Logger
	// Now is the clock (tests inject one); nil means time.Now.
	Now func() time.Time
	// Metrics is where the queue and the hosts register their counters (nil: nowhere).
	Metrics prometheus.Registerer
	// MinFree is the free space (bytes) the queue's file system must keep: below it (plus the
	// SIZE a client declared) RCPT is answered 452 4.3.1, as Postfix's queue_minfree. Zero
	// means DefaultMinFree; negative disables the check.
	MinFree int64
}

// DefaultMinFree is the free space the queue keeps by default before refusing new mail.
const DefaultMinFree = 1 << 20

// Queue is the durable mail queue and its delivery runner. It is a component.Component with no
// listeners.
type Queue struct {
	opts  QueueOptions
	store *mailstore.Store
	log   *slog.Logger
	m     *metrics

	mu      sync.Mutex
	entries map[string]*entry
	kick    chan struct{}
	stop    chan struct{}
	stopped bool
	workers sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
	served  chan struct{}
}

// entry is a loaded envelope and whether a worker is on it.
type entry struct {
	env  *Envelope
	busy bool
}

// NewQueue opens the queue directory (creating it) and loads what a previous run left there.
func NewQueue(store *mailstore.Store, opts QueueOptions) (*Queue, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.MinFree == 0 {
		opts.MinFree = DefaultMinFree
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "tmp"), 0o750); err != nil {
		return nil, fmt.Errorf("smtp: queue: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	q := &Queue{opts: opts, store: store, log: opts.Logger, entries: map[string]*entry{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), ctx: ctx, cancel: cancel, served: make(chan struct{})}
	m, err := registerMetrics(opts.Metrics, q.Len)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("smtp: metrics: %w", err)
	}
	q.m = m
	if err := q.load(); err != nil {
		cancel()
		return nil, err
	}
	return q, nil
}

// load reads every committed envelope and removes uncommitted leftovers.
func (q *Queue) load() error {
	tmp := filepath.Join(q.opts.Dir, "tmp")
	if olds, err := os.ReadDir(tmp); err == nil {
		for _, o := range olds {
			os.Remove(filepath.Join(tmp, o.Name())) // never acknowledged: the 250 came after the commit
		}
	}
	files, err := os.ReadDir(q.opts.Dir)
	if err != nil {
		return fmt.Errorf("smtp: queue: %w", err)
	}
	for _, f := range files {
		id, ok := strings.CutSuffix(f.Name(), ".json")
		if !ok {
			continue
		}
		env, err := readEnvelope(filepath.Join(q.opts.Dir, f.Name()))
		if err != nil {
			q.log.Error("queue: unreadable envelope left in place", "file", f.Name(), "err", err)
			continue
		}
		if env.ID != id {
			continue
		}
		q.entries[id] = &entry{env: env}
	}
	for _, f := range files {
		if id, ok := strings.CutSuffix(f.Name(), ".eml"); ok && q.entries[id] == nil {
			if _, err := os.Stat(filepath.Join(q.opts.Dir, id+".json")); err != nil {
				os.Remove(filepath.Join(q.opts.Dir, f.Name()))
			}
		}
	}
	return nil
}

// readEnvelope decodes an envelope file.
func readEnvelope(path string) (*Envelope, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var env Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, err
	}
	return &env, nil
}

// newID returns a queue id: sortable by time, with random bits.
func newID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatInt(now.UnixNano(), 36) + hex.EncodeToString(b[:])
}

// Spool is a message being received into the queue.
type Spool struct {
	q    *Queue
	ID   string
	f    *os.File
	size int64
}

// NewSpool starts receiving a message into a temporary queue file.
func (q *Queue) NewSpool() (*Spool, error) {
	id := newID(q.opts.Now())
	f, err := os.OpenFile(filepath.Join(q.opts.Dir, "tmp", id+".eml"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("smtp: queue: %w", err)
	}
	return &Spool{q: q, ID: id, f: f}, nil
}

// Write appends message data.
func (s *Spool) Write(p []byte) (int, error) {
	n, err := s.f.Write(p)
	s.size += int64(n)
	return n, err
}

// Abort discards the spooled data.
func (s *Spool) Abort() {
	s.f.Close()
	os.Remove(s.f.Name())
}

// Commit makes the message durable before the caller acknowledges it: fsync the data, rename
// it into the queue, write and fsync the envelope, fsync the directory. Then the runner is woken.
func (s *Spool) Commit(env *Envelope) error {
	env.ID, env.Size = s.ID, s.size
	if err := s.f.Sync(); err != nil {
		s.Abort()
		return fmt.Errorf("smtp: queue: fsync: %w", err)
	}
	if err := s.f.Close(); err != nil {
		os.Remove(s.f.Name())
		return fmt.Errorf("smtp: queue: %w", err)
	}
	dir := s.q.opts.Dir
	if err := os.Rename(s.f.Name(), filepath.Join(dir, s.ID+".eml")); err != nil {
		os.Remove(s.f.Name())
		return fmt.Errorf("smtp: queue: %w", err)
	}
	if err := s.q.persist(env); err != nil {
		// Never half-queued: neither the body nor (if only the directory fsync failed) the
		// envelope may stay behind for a message that was not acknowledged.
		os.Remove(filepath.Join(dir, s.ID+".json"))
		os.Remove(filepath.Join(dir, s.ID+".eml"))
		_ = syncDir(dir)
		return err
	}
	s.q.add(env)
	return nil
}

// roomFor reports whether the queue's file system has room for a message of size octets
// (0: unknown) beyond MinFree. A failing statfs does not refuse mail: the write will tell.
func (q *Queue) roomFor(size int64) bool {
	if q.opts.MinFree < 0 {
		return true
	}
	free, err := diskspace.Free(q.opts.Dir)
	if err != nil {
		return true
	}
	return free >= q.opts.MinFree+size
}

// persist writes an envelope durably (temporary file, fsync, rename, directory fsync).
func (q *Queue) persist(env *Envelope) error {
	data, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return fmt.Errorf("smtp: queue: %w", err)
	}
	tmp := filepath.Join(q.opts.Dir, "tmp", env.ID+".json")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("smtp: queue: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(q.opts.Dir, env.ID+".json"))
	}
	if err == nil {
		err = syncDir(q.opts.Dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("smtp: queue: persist %s: %w", env.ID, err)
	}
	return nil
}

// remove deletes a finished message: envelope first (it is the commit record), then the data.
func (q *Queue) remove(id string) error {
	if err := os.Remove(filepath.Join(q.opts.Dir, id+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("smtp: queue: %w", err)
	}
	os.Remove(filepath.Join(q.opts.Dir, id+".eml"))
	return syncDir(q.opts.Dir)
}

// syncDir fsyncs a directory.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// add registers a committed envelope and wakes the runner.
func (q *Queue) add(env *Envelope) {
	q.mu.Lock()
	q.entries[env.ID] = &entry{env: env}
	q.mu.Unlock()
	if q.m != nil {
		q.m.queued.Inc()
	}
	q.wake()
}

// wake nudges the runner to look for due work.
func (q *Queue) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Flush makes every queued recipient due now and wakes the runner (`outpost mail flush`).
func (q *Queue) Flush() int {
	now := q.opts.Now()
	n := 0
	q.mu.Lock()
	for _, e := range q.entries {
		for _, r := range e.env.Rcpts {
			if r.State == StateQueued && !e.busy {
				r.Next = now
				n++
			}
		}
	}
	q.mu.Unlock()
	q.wake()
	return n
}

// Kick wakes the runner without changing any schedule (tests that move an injected clock use it).
func (q *Queue) Kick() { q.wake() }

// Len is the number of messages in the queue.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
}

// List returns copies of the queued envelopes, oldest first.
func (q *Queue) List() []Envelope {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]Envelope, 0, len(q.entries))
	for _, e := range q.entries {
		out = append(out, copyEnvelope(e.env))
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Arrived.Before(out[j].Arrived) || out[i].Arrived.Equal(out[j].Arrived) && out[i].ID < out[j].ID
	})
	return out
}

// copyEnvelope deep-copies an envelope.
func copyEnvelope(e *Envelope) Envelope {
	c := *e
	c.Rcpts = make([]*Recipient, len(e.Rcpts))
	for i, r := range e.Rcpts {
		rc := *r
		c.Rcpts[i] = &rc
	}
	return c
}

// ReadQueueDir lists the envelopes in a queue directory without a running queue (the
// `outpost mail queue` subcommand).
func ReadQueueDir(dir string) ([]Envelope, error) {
	files, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("smtp: queue: %w", err)
	}
	var out []Envelope
	for _, f := range files {
		if strings.HasSuffix(f.Name(), ".json") {
			if env, err := readEnvelope(filepath.Join(dir, f.Name())); err == nil {
				out = append(out, *env)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Arrived.Before(out[j].Arrived) })
	return out, nil
}

// open opens a queued message's data.
func (q *Queue) open(id string) (io.ReadCloser, error) {
	f, err := os.Open(filepath.Join(q.opts.Dir, id+".eml"))
	if err != nil {
		return nil, fmt.Errorf("smtp: queue: %w", err)
	}
	return f, nil
}
