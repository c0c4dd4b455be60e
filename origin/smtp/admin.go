package smtp

import (
	"encoding/json"
	"net/http"
)

// RegisterAdmin mounts the queue's admin endpoints on mux:
//
//	GET  /mail/queue  the queued messages and per-recipient state, as JSON
//	POST /mail/flush  make every queued recipient due now; replies {"flushed": N}
func (q *Queue) RegisterAdmin(mux *http.ServeMux) {
	if mux == nil {
		return
	}
	mux.HandleFunc("GET /mail/queue", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, q.List())
	})
	mux.HandleFunc("POST /mail/flush", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]int{"flushed": q.Flush()})
	})
}

// writeJSON writes v as an indented JSON response.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
