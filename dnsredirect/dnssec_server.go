package dnsredirect

import "time"

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
		d := s.st.Load().dnssecDeadline()
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
