package bench

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"sync"

	"golang.org/x/net/http2"
)

// This file is the scorecard's multiplexed strategy: the way a browser of the 2020s loads a
// page. One TCP connection (1 RTT), a TLS 1.3 handshake (1 RTT), the base page on one HTTP/2
// stream (1 RTT), then every object on its own stream, all at once (1 RTT), plus the bytes'
// transmission time.

// pageMultiplexed loads the page and its objects over one new TLS 1.3 connection with
// HTTP/2, the objects on concurrent streams. The session is never resumed (the client keeps
// no session cache), so every run pays the full handshake.
func pageMultiplexed(pc *pageClient, page, suffix string) error {
	raw, err := pc.dial()
	if err != nil {
		return err
	}
	tc := tls.Client(countingConn{Conn: raw, n: &pc.bytes}, pc.tls)
	defer tc.Close()
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake with %s: %w", pc.host, err)
	}
	if st := tc.ConnectionState(); st.NegotiatedProtocol != "h2" || st.Version != tls.VersionTLS13 {
		return fmt.Errorf("%s negotiated %s with ALPN %q: the multiplexed strategy needs TLS 1.3 and h2", pc.host, tlsVersionName(st.Version), st.NegotiatedProtocol)
	}
	t := &http2.Transport{DisableCompression: true, StrictMaxConcurrentStreams: true}
	cc, err := t.NewClientConn(tc)
	if err != nil {
		return fmt.Errorf("HTTP/2 to %s: %w", pc.host, err)
	}
	defer cc.Close()
	base, err := pc.h2Get(cc, page)
	if err != nil {
		return err
	}
	pc.streamLimit.Store(int64(cc.State().MaxConcurrentStreams))
	objs, err := objectsOf(base, page, suffix)
	if err != nil {
		return err
	}
	errs := make(chan error, len(objs))
	var wg sync.WaitGroup
	for _, o := range objs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := pc.h2Get(cc, o); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// h2Get fetches path on its own stream of cc and accounts for it like readOne.
func (pc *pageClient) h2Get(cc *http2.ClientConn, path string) (*response, error) {
	req, err := http.NewRequest(http.MethodGet, "https://"+pc.host+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "outpost-bench")
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	r := &response{status: resp.StatusCode, body: body, bodyLen: int64(len(body)),
		cache: parseCacheStatus([]byte(resp.Header.Get("Cache-Status"))), cacheStatus: resp.Header.Get("Cache-Status")}
	if pc.onResponse != nil {
		pc.onResponse(path, r)
	}
	switch r.cache {
	case cacheHit:
		pc.hits.Add(1)
	case cacheMiss:
		pc.misses.Add(1)
	}
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", path, r.status)
	}
	return r, nil
}
