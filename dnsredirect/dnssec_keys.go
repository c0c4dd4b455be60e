package dnsredirect

import (
	"bufio"
	"crypto"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// dnssecKey is one key of a zone, read from or written to a BIND-format key file pair
// (K<zone>.+<alg>+<tag>.key and .private), so dnssec-keygen output drops in.
type dnssecKey struct {
	pub    *dns.DNSKEY
	priv   crypto.Signer
	tag    uint16
	base   string // path without the .key/.private suffix
	timing keyTiming
}

// keyTiming is a key's schedule as BIND's timing metadata records it (RFC 6781 §4.1): the
// key is in the DNSKEY RRset from publish until delete and signs from activate until
// inactive. A zero time is unset: an unset publish or activate means "already", an unset
// inactive or delete "never".
type keyTiming struct {
	created, publish, activate, inactive, delete time.Time
}

// timingFields are the .private file's timing lines, in the order BIND writes them.
var timingFields = []string{"Created", "Publish", "Activate", "Inactive", "Delete"}

func (t *keyTiming) field(name string) *time.Time {
	switch name {
	case "Created":
		return &t.created
	case "Publish":
		return &t.publish
	case "Activate":
		return &t.activate
	case "Inactive":
		return &t.inactive
	default:
		return &t.delete
	}
}

// ksk reports a key-signing key (or CSK): the SEP flag (RFC 4034 §2.1.1).
func (k *dnssecKey) ksk() bool { return k.pub.Flags&dns.SEP != 0 }

// published reports whether the key is in the DNSKEY RRset at now.
func (k *dnssecKey) published(now time.Time) bool {
	t := k.timing
	return !t.publish.After(now) && (t.delete.IsZero() || now.Before(t.delete))
}

// active reports whether the key signs at now.
func (k *dnssecKey) active(now time.Time) bool {
	t := k.timing
	return k.published(now) && !t.activate.After(now) && (t.inactive.IsZero() || now.Before(t.inactive))
}

// events are the key's timing events, for scheduling the next re-sign.
func (k *dnssecKey) events() []time.Time {
	t := k.timing
	return []time.Time{t.publish, t.activate, t.inactive, t.delete}
}

// role names the key in file comments and command output.
func (k *dnssecKey) role() string {
	if k.ksk() {
		return "key-signing key"
	}
	return "zone-signing key"
}

// keyFilePrefix is the file name prefix of a zone's keys: "K" + the zone with its final dot
// + "+" (dnssec-keygen's naming).
func keyFilePrefix(zone string) string { return "K" + zone + "+" }

// loadKeys reads every key pair of zone in dir, sorted by tag.
func loadKeys(dir, zone string) ([]*dnssecKey, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("dnssec keys: %w", err)
	}
	var keys []*dnssecKey
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(strings.ToLower(name), strings.ToLower(keyFilePrefix(zone))) || !strings.HasSuffix(name, ".key") {
			continue
		}
		k, err := readKey(filepath.Join(dir, strings.TrimSuffix(name, ".key")), zone)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].tag < keys[j].tag })
	return keys, nil
}

// readKey reads one pair: the DNSKEY record from base.key, the private key and timing from
// base.private.
func readKey(base, zone string) (*dnssecKey, error) {
	f, err := os.Open(base + ".key")
	if err != nil {
		return nil, fmt.Errorf("dnssec key: %w", err)
	}
	defer f.Close()
	zp := dns.NewZoneParser(f, zone, base+".key")
	var pub *dns.DNSKEY
	for rr, ok := zp.Next(); ok && pub == nil; rr, ok = zp.Next() {
		pub, _ = rr.(*dns.DNSKEY)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("dnssec key %s.key: %w", base, err)
	}
	if pub == nil || !strings.EqualFold(pub.Hdr.Name, zone) {
		return nil, fmt.Errorf("dnssec key %s.key: no DNSKEY record for %s", base, zone)
	}
	if pub.Flags&dns.ZONE == 0 || pub.Protocol != 3 {
		return nil, fmt.Errorf("dnssec key %s.key: not a zone key (flags %d, protocol %d)", base, pub.Flags, pub.Protocol)
	}
	text, err := os.ReadFile(base + ".private")
	if err != nil {
		return nil, fmt.Errorf("dnssec key: %w", err)
	}
	priv, err := pub.ReadPrivateKey(strings.NewReader(string(text)), base+".private")
	if err != nil {
		return nil, fmt.Errorf("dnssec key %s.private: %w", base, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("dnssec key %s.private: algorithm %d cannot sign", base, pub.Algorithm)
	}
	k := &dnssecKey{pub: pub, priv: signer, tag: pub.KeyTag(), base: base}
	if k.timing, err = parseTiming(string(text)); err != nil {
		return nil, fmt.Errorf("dnssec key %s.private: %w", base, err)
	}
	return k, nil
}

// parseTiming reads the "Publish: 20261203170000" lines of a .private file.
func parseTiming(text string) (keyTiming, error) {
	var t keyTiming
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		for _, f := range timingFields {
			if strings.EqualFold(strings.TrimSpace(name), f) {
				v, err := time.Parse("20060102150405", strings.TrimSpace(value))
				if err != nil {
					return t, fmt.Errorf("%s: %w", f, err)
				}
				*t.field(f) = v
			}
		}
	}
	return t, nil
}

// generateKey makes a new key for zone in dir (created 0700) and writes its pair (0600).
func generateKey(dir, zone string, alg uint8, ksk bool, timing keyTiming) (*dnssecKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dnssec key dir: %w", err)
	}
	for range 16 { // a fresh tag: retry on a collision with a key on disk
		pub := &dns.DNSKEY{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
			Flags: dns.ZONE, Protocol: 3, Algorithm: alg}
		if ksk {
			pub.Flags |= dns.SEP
		}
		priv, err := pub.Generate(256)
		if err != nil {
			return nil, fmt.Errorf("dnssec key: generate algorithm %d: %w", alg, err)
		}
		k := &dnssecKey{pub: pub, priv: priv.(crypto.Signer), tag: pub.KeyTag(), timing: timing}
		k.base = filepath.Join(dir, fmt.Sprintf("%s%03d+%05d", keyFilePrefix(zone), alg, k.tag))
		if _, err := os.Stat(k.base + ".key"); err == nil {
			continue
		}
		if err := k.write(); err != nil {
			return nil, err
		}
		return k, nil
	}
	return nil, fmt.Errorf("dnssec key: no free key tag for %s", zone)
}

// write stores the pair with 0600 permissions, each file replaced atomically.
func (k *dnssecKey) write() error {
	stamp := func(t time.Time) string { return t.UTC().Format("20060102150405") }
	var pubText strings.Builder
	fmt.Fprintf(&pubText, "; This is a %s, keyid %d, for %s\n", k.role(), k.tag, k.pub.Hdr.Name)
	var privText strings.Builder
	privText.WriteString(k.pub.PrivateKeyString(k.priv))
	for _, f := range timingFields {
		if t := *k.timing.field(f); !t.IsZero() {
			fmt.Fprintf(&pubText, "; %s: %s (%s)\n", f, stamp(t), t.UTC().Format(time.ANSIC))
			fmt.Fprintf(&privText, "%s: %s\n", f, stamp(t))
		}
	}
	pubText.WriteString(k.pub.String() + "\n")
	if err := writeFileAtomic(k.base+".private", privText.String()); err != nil {
		return err
	}
	return writeFileAtomic(k.base+".key", pubText.String())
}

// writeFileAtomic writes text to path (0600) through a synced temporary file and a rename.
func writeFileAtomic(path, text string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("dnssec key: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("dnssec key: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("dnssec key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("dnssec key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("dnssec key: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("dnssec key: %w", err)
	}
	return nil
}
