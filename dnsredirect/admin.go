package dnsredirect

import (
	"encoding/json"
	"github.com/outpost-proxy/outpost/dnsredirect/geodb"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/outpost-proxy/outpost/internal/config"
)

// Explain is the decision for one name and client, step by step (GET /dns/explain).
type Explain struct {
	Name       string        `json:"name"`
	QType      string        `json:"qtype"`
	Client     string        `json:"client"`
	Zone       string        `json:"zone,omitempty"`
	Pool       string        `json:"pool,omitempty"`
	Steps      []ExplainStep `json:"steps,omitempty"`
	DecidedBy  string        `json:"decided_by,omitempty"`
	ECSScope   int           `json:"ecs_scope"`
	Rcode      string        `json:"rcode"`
	AA         bool          `json:"authoritative"`
	Answer     []string      `json:"answer"`
	Authority  []string      `json:"authority,omitempty"`
	Additional []string      `json:"additional,omitempty"`
	// GeoIP holds the client's complete records in the configured databases ("city", "asn"),
	// as geoip2-golang decodes them, so an operator sees what the steps saw.
	GeoIP map[string]any `json:"geoip,omitempty"`
}

// ExplainStep is one steering step: what it found and, if it decided, the edges it chose.
type ExplainStep struct {
	Step   string `json:"step"`
	Result string `json:"result"`
	Edges  string `json:"edges,omitempty"`
}

func (ex *Explain) step(s stepKind, result, edges string) {
	ex.Steps = append(ex.Steps, ExplainStep{Step: s.String(), Result: result, Edges: edges})
}

// decide notes the outcome of step s on its entry (adding one if the step logged nothing).
func (ex *Explain) decide(s stepKind, note, edges string) {
	for i := len(ex.Steps) - 1; i >= 0; i-- {
		if last := &ex.Steps[i]; last.Step == s.String() {
			if note != "" {
				last.Result += "; " + note
			}
			last.Edges = edges
			return
		}
	}
	ex.step(s, note, edges)
}

// trimAfter drops the entries of steps after s (consulted, but not needed for the decision).
func (ex *Explain) trimAfter(s stepKind) {
	for i := len(ex.Steps) - 1; i >= 0; i-- {
		if ex.Steps[i].Step == s.String() {
			ex.Steps = ex.Steps[:i+1]
			return
		}
	}
}

// explain answers name/qtype for client as a query from that network would be answered.
func (st *state) explain(name string, qtype uint16, client netip.Addr) *Explain {
	name = config.CanonicalDNSName(name)
	ex := &Explain{Name: name, QType: dns.TypeToString[qtype], Client: client.String()}
	if z := st.findZone(name); z != nil {
		ex.Zone = z.origin
	}
	ex.describeClient(st, client)
	res := st.resolve(name, qtype, nil)
	if res.dyn != nil {
		ex.Pool = res.dyn.pool.name
		sel, step, scope := st.steer(res.dyn, client, ex)
		ex.DecidedBy, ex.ECSScope = step.String(), scope
		res = st.resolve(name, qtype, &sel)
	}
	m := res.msg
	ex.Rcode, ex.AA = dns.RcodeToString[m.Rcode], m.Authoritative
	ex.Answer = rrStrings(m.Answer)
	ex.Authority, ex.Additional = rrStrings(m.Ns), rrStrings(m.Extra)
	return ex
}

func rrStrings(rrs []dns.RR) []string {
	out := []string{}
	for _, rr := range rrs {
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	return out
}

// EdgeStatus is one edge as GET /dns/edges shows it.
type EdgeStatus struct {
	Name      string    `json:"name"`
	Addrs     []string  `json:"addrs"`
	Up        bool      `json:"up"`
	Checked   bool      `json:"checked_up"`
	Force     string    `json:"force"`
	Check     string    `json:"check,omitempty"`
	Checks    int       `json:"checks"`
	LastCheck time.Time `json:"last_check,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	Pools     []string  `json:"pools"`
	Full      bool      `json:"full"`
	Weight    int       `json:"weight"`
}

// Edges reports every edge's health and configuration.
func (s *Server) Edges() []EdgeStatus {
	st := s.st.Load()
	out := make([]EdgeStatus, 0, len(st.edges))
	for i, e := range st.edges {
		h := e.h
		h.mu.Lock()
		es := EdgeStatus{Name: e.name, Up: h.up(), Checked: h.checked.Load(), Force: Force(h.force.Load()).String(),
			Check: h.spec.target, Checks: h.checks, LastCheck: h.lastCheck, LastError: h.lastErr, Since: h.changed,
			Pools: []string{}, Full: e.full, Weight: e.weight}
		h.mu.Unlock()
		for _, a := range e.addrs {
			es.Addrs = append(es.Addrs, a.String())
		}
		for _, p := range st.pools {
			if p.member&(1<<i) != 0 {
				es.Pools = append(es.Pools, p.name)
			}
		}
		out = append(out, es)
	}
	return out
}

// SetForce overrides an edge's health: up, down (drain) or auto.
func (s *Server) SetForce(name string, f Force) bool {
	st := s.st.Load()
	i, ok := st.edgeIdx[strings.ToLower(name)]
	if !ok {
		return false
	}
	old := Force(st.edges[i].h.force.Swap(int32(f)))
	if old != f {
		s.log.Warn("dns: edge state forced by the operator", "edge", st.edges[i].name, "force", f.String())
	}
	return true
}

// Explain explains the answer to name/qtype for a client address.
func (s *Server) Explain(name string, qtype uint16, client netip.Addr) *Explain {
	return s.st.Load().explain(name, qtype, client)
}

// mountAdmin registers the admin endpoints.
func (s *Server) mountAdmin(mux *http.ServeMux) {
	mux.HandleFunc("GET /dns/edges", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Edges())
	})
	force := func(w http.ResponseWriter, r *http.Request) {
		state := r.FormValue("state")
		f, err := ParseForce(state)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error() + " (use ?state=up|down|auto)"})
			return
		}
		if !s.SetForce(r.PathValue("name"), f) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no edge named " + r.PathValue("name")})
			return
		}
		writeJSON(w, http.StatusOK, s.Edges())
	}
	mux.HandleFunc("POST /dns/edges/{name}", force)
	mux.HandleFunc("PUT /dns/edges/{name}", force)
	mux.HandleFunc("GET /dns/explain", s.serveExplain)
}

// serveExplain is GET /dns/explain?name=www.cdn.test&client=203.0.113.7[&qtype=AAAA].
func (s *Server) serveExplain(w http.ResponseWriter, r *http.Request) {
	name, client := r.FormValue("name"), r.FormValue("client")
	if name == "" || len(name) > 1024 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "name is required"})
		return
	}
	if _, ok := dns.IsDomainName(name); !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "name is not a domain name"})
		return
	}
	addr, err := netip.ParseAddr(client)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "client must be an IP address"})
		return
	}
	qtype := dns.TypeA
	if t := r.FormValue("qtype"); t != "" {
		var ok bool
		if qtype, ok = dns.StringToType[strings.ToUpper(t)]; !ok {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unknown qtype " + t})
			return
		}
	}
	writeJSON(w, http.StatusOK, s.Explain(name, qtype, addr.Unmap()))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// describeClient adds the client's complete GeoIP records (or the lookup error) to ex.
func (ex *Explain) describeClient(st *state, client netip.Addr) {
	for kind, db := range map[string]*geodb.DB{"city": st.cityDB, "asn": st.asnDB} {
		if db == nil {
			continue
		}
		rec, err := db.Describe(client)
		if err != nil {
			rec = err.Error()
		}
		if ex.GeoIP == nil {
			ex.GeoIP = map[string]any{}
		}
		ex.GeoIP[kind] = rec
	}
}
