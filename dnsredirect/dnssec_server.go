package dnsredirect

import (
	"strings"
	"time"
)

// resignCheck is how often the server looks whether the signed zones are due for re-signing
// or a key timing event (dnssec.go: the state's deadline).
const resignCheck = time.Second

// resign rebuilds the state when its signatures reach their refresh point or a key is
// published, activated, retired or removed: the same atomic swap as a reload, keeping the
// signatures still in use. A failed rebuild (no active key, say) keeps the old state and is
// retried after a minute.
func (s *Server) resign() {
	retry := time.Time{}
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(resignCheck):
		}
		st := s.st.Load()
		s.m.publishDNSSEC(st)
		d := st.dnssecDeadline()
		now := s.now()
		if d.IsZero() || now.Before(d) || now.Before(retry) {
			continue
		}
		s.log.Info("dns: dnssec: re-signing (signature refresh or key timing event)", "due", d)
		s.mu.Lock()
		cfg := s.cfg
		s.mu.Unlock()
		if err := s.Reload(cfg); err != nil {
			retry = now.Add(time.Minute)
		}
	}
}

// publishDNSSEC sets the signed zones' expiration and re-sign times in the metrics, so an
// operator can alert well before signatures expire.
func (m *metrics) publishDNSSEC(st *state) {
	for origin, zs := range st.signers {
		zone := strings.TrimSuffix(origin, ".")
		m.dnssec.WithLabelValues(zone, "signature_expiration").Set(float64(zs.expiration))
		m.dnssec.WithLabelValues(zone, "next_resign").Set(float64(zs.deadline.Unix()))
	}
}
