package smtp

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the SMTP hosts' and the queue's counters (one set per process, shared by hosts).
type metrics struct {
	sessions     prometheus.Counter     // EHLO/HELO sessions started
	accepted     prometheus.Counter     // messages committed to the queue (250 after DATA)
	rejected     prometheus.Counter     // recipients refused (550/551/554)
	authFailures prometheus.Counter     // failed AUTH attempts
	queued       prometheus.Counter     // messages added to the queue (incl. bounces)
	deliveries   *prometheus.CounterVec // delivery attempts per recipient by outcome
}

// registerMetrics creates and registers the counters on reg (nil: not exported), and the
// queue length gauge reading length.
func registerMetrics(reg prometheus.Registerer, length func() int) (*metrics, error) {
	m := &metrics{
		sessions:     prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_smtp_sessions_total", Help: "SMTP sessions started (EHLO/HELO)."}),
		accepted:     prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_smtp_messages_accepted_total", Help: "Messages committed to the queue and acknowledged with 250."}),
		rejected:     prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_smtp_recipients_rejected_total", Help: "Recipients refused (no such user, relay denied)."}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_smtp_auth_failures_total", Help: "Failed SMTP AUTH attempts."}),
		queued:       prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_mail_queue_added_total", Help: "Messages added to the mail queue, bounces included."}),
		deliveries:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_mail_queue_deliveries_total", Help: "Per-recipient delivery attempts by outcome."}, []string{"outcome"}),
	}
	if reg == nil {
		return m, nil
	}
	queueLen := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "outpost_mail_queue_messages", Help: "Messages in the mail queue (waiting for delivery or a retry)."},
		func() float64 { return float64(length()) })
	for _, c := range []prometheus.Collector{m.sessions, m.accepted, m.rejected, m.authFailures, m.queued, m.deliveries, queueLen} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	return m, nil
}

// metric runs f on the queue's metrics when there are any.
func (q *Queue) metric(f func(*metrics)) {
	if q.m != nil {
		f(q.m)
	}
}
