package smtp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestAdminQueueAndFlush: GET /mail/queue lists a deferred message; POST /mail/flush makes it
// due now and the runner retries it.
func TestAdminQueueAndFlush(t *testing.T) {
	e := startMail(t, envConfig{clock: true})
	mux := http.NewServeMux()
	e.q.RegisterAdmin(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	host, port := hostPort(t, e.a.Addr())
	pyClient(t, "send", host, port, "alice@outpost.test", "dave@down.test", "flush me", "alice", "wonderland")
	e.waitQueue(t, "first attempt", func(l []Envelope) bool { return len(l) == 1 && l[0].Rcpts[0].Attempts == 1 })

	resp, err := http.Get(srv.URL + "/mail/queue")
	if err != nil {
		t.Fatal(err)
	}
	var listed []Envelope
	if err := json.NewDecoder(resp.Body).Decode(&listed); err != nil || len(listed) != 1 || listed[0].Rcpts[0].Addr != "dave@down.test" {
		t.Fatalf("GET /mail/queue = %+v, %v", listed, err)
	}
	resp.Body.Close()

	resp, err = http.Post(srv.URL+"/mail/flush", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var flushed struct{ Flushed int }
	if err := json.NewDecoder(resp.Body).Decode(&flushed); err != nil || flushed.Flushed != 1 {
		t.Fatalf("POST /mail/flush = %+v, %v", flushed, err)
	}
	resp.Body.Close()
	// The clock did not move: only the flush can explain the second attempt.
	e.waitQueue(t, "second attempt", func(l []Envelope) bool { return len(l) == 1 && l[0].Rcpts[0].Attempts == 2 })
	envs, err := ReadQueueDir(e.q.opts.Dir)
	if err != nil || len(envs) != 1 || envs[0].Rcpts[0].Attempts != 2 {
		t.Fatalf("ReadQueueDir = %+v, %v (the state on disk must match)", envs, err)
	}
}
