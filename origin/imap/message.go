package imap

// The FETCH and SEARCH evaluation below follows go-imap's imapmemserver (MIT licence,
// github.com/emersion/go-imap/v2/imapserver/imapmemserver/message.go), reading messages from the
// Maildir store instead of memory.

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"github.com/outpost-proxy/outpost/origin/mailstore"
)

// flagLetters maps IMAP system flags to Maildir info letters.
var flagLetters = []struct {
	flag   goimap.Flag
	letter byte
}{
	{goimap.FlagDraft, 'D'}, {goimap.FlagFlagged, 'F'}, {goimap.FlagAnswered, 'R'},
	{goimap.FlagSeen, 'S'}, {goimap.FlagDeleted, 'T'},
}

// systemFlags are the flags this server stores (keywords are not kept, so no \*).
var systemFlags = []goimap.Flag{goimap.FlagAnswered, goimap.FlagFlagged, goimap.FlagDeleted, goimap.FlagSeen, goimap.FlagDraft}

// hasFlag reports whether a Maildir flag string has letter.
func hasFlag(flags string, letter byte) bool { return strings.IndexByte(flags, letter) >= 0 }

// imapFlags converts Maildir letters to IMAP flags.
func imapFlags(letters string) []goimap.Flag {
	out := []goimap.Flag{}
	for _, f := range flagLetters {
		if hasFlag(letters, f.letter) {
			out = append(out, f.flag)
		}
	}
	return out
}

// letterOf returns the Maildir letter of an IMAP flag (0 for keywords we do not keep).
func letterOf(flag goimap.Flag) byte {
	for _, f := range flagLetters {
		if strings.EqualFold(string(f.flag), string(flag)) {
			return f.letter
		}
	}
	return 0
}

// maildirFlags converts IMAP flags to Maildir letters, dropping keywords.
func maildirFlags(flags []goimap.Flag) string {
	var b []byte
	for _, f := range flags {
		if l := letterOf(f); l != 0 {
			b = append(b, l)
		}
	}
	return mailstore.NormalizeFlags(string(b))
}

// applyStore computes the flags after a STORE operation.
func applyStore(cur string, st *goimap.StoreFlags) string {
	change := maildirFlags(st.Flags)
	switch st.Op {
	case goimap.StoreFlagsSet:
		return change
	case goimap.StoreFlagsAdd:
		return mailstore.NormalizeFlags(cur + change)
	default:
		return strings.Map(func(r rune) rune {
			if strings.ContainsRune(change, r) {
				return -1
			}
			return r
		}, cur)
	}
}

// needsBody reports whether a FETCH needs the message content.
func needsBody(o *goimap.FetchOptions) bool {
	return o.Envelope || o.BodyStructure != nil || len(o.BodySection) > 0 || len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0
}

// fetchMessage writes one message's FETCH response. buf is nil unless needsBody.
func fetchMessage(w *imapserver.FetchResponseWriter, m mailstore.Message, buf []byte, o *goimap.FetchOptions) error {
	w.WriteUID(goimap.UID(m.UID))
	if o.Flags {
		w.WriteFlags(imapFlags(m.Flags))
	}
	if o.InternalDate {
		w.WriteInternalDate(m.Date)
	}
	if o.RFC822Size {
		w.WriteRFC822Size(m.Size)
	}
	if o.Envelope {
		w.WriteEnvelope(envelopeOf(buf))
	}
	if o.BodyStructure != nil {
		w.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(buf)))
	}
	for _, bs := range o.BodySection {
		if err := writeLiteral(imapserver.ExtractBodySection(bytes.NewReader(buf), bs), w, bs, nil); err != nil {
			return err
		}
	}
	for _, bs := range o.BinarySection {
		data := imapserver.ExtractBinarySection(bytes.NewReader(buf), bs)
		if err := writeLiteral(data, w, nil, bs); err != nil {
			return err
		}
	}
	for _, bss := range o.BinarySectionSize {
		w.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(buf), bss))
	}
	return w.Close()
}

// writeLiteral writes a body or binary section literal of the right size.
func writeLiteral(data []byte, w *imapserver.FetchResponseWriter, bs *goimap.FetchItemBodySection, bin *goimap.FetchItemBinarySection) error {
	var wc io.WriteCloser
	if bs != nil {
		wc = w.WriteBodySection(bs, int64(len(data)))
	} else {
		wc = w.WriteBinarySection(bin, int64(len(data)))
	}
	_, werr := wc.Write(data)
	cerr := wc.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// envelopeOf parses the header into an ENVELOPE.
func envelopeOf(buf []byte) *goimap.Envelope {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(buf)))
	if err != nil {
		return nil
	}
	return imapserver.ExtractEnvelope(h)
}

// matches evaluates SEARCH criteria against one message; load fetches the content lazily.
func matches(m mailstore.Message, seq uint32, c *goimap.SearchCriteria, load func() []byte) bool {
	for _, s := range c.SeqNum {
		if seq == 0 || !s.Contains(seq) {
			return false
		}
	}
	for _, s := range c.UID {
		if !s.Contains(goimap.UID(m.UID)) {
			return false
		}
	}
	if !matchDate(m.Date, c.Since, c.Before) {
		return false
	}
	for _, f := range c.Flag {
		if l := letterOf(f); l == 0 || !hasFlag(m.Flags, l) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if l := letterOf(f); l != 0 && hasFlag(m.Flags, l) {
			return false
		}
	}
	if c.Larger != 0 && m.Size <= c.Larger || c.Smaller != 0 && m.Size >= c.Smaller {
		return false
	}
	if !matchContent(c, load) {
		return false
	}
	for i := range c.Not {
		if matches(m, seq, &c.Not[i], load) {
			return false
		}
	}
	for _, or := range c.Or {
		if !matches(m, seq, &or[0], load) && !matches(m, seq, &or[1], load) {
			return false
		}
	}
	return true
}

// matchContent evaluates the header, date and text criteria, which need the message.
func matchContent(c *goimap.SearchCriteria, load func() []byte) bool {
	if len(c.Header) == 0 && c.SentSince.IsZero() && c.SentBefore.IsZero() && len(c.Text) == 0 && len(c.Body) == 0 {
		return true
	}
	buf := load()
	entity := func() *gomessage.Entity {
		e, _ := gomessage.Read(bytes.NewReader(buf))
		if e == nil {
			e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(nil))
		}
		return e
	}
	header := mail.Header{Header: entity().Header}
	for _, hc := range c.Header {
		if !matchHeaderFields(header.FieldsByKey(hc.Key), hc.Value) {
			return false
		}
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		t, err := header.Date()
		if err != nil || !matchDate(t, c.SentSince, c.SentBefore) {
			return false
		}
	}
	for _, text := range c.Text {
		if !matchEntity(entity(), text, true) {
			return false
		}
	}
	for _, body := range c.Body {
		if !matchEntity(entity(), body, false) {
			return false
		}
	}
	return true
}

// matchDate compares dates ignoring time and zone (RFC 3501 6.4.4).
func matchDate(t, since, before time.Time) bool {
	t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && t.Before(since) {
		return false
	}
	return before.IsZero() || t.Before(before)
}

// matchHeaderFields reports whether any field contains pattern (case-insensitive).
func matchHeaderFields(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		v, _ := fields.Text()
		if strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

// matchEntity searches text parts (and headers when includeHeader) for pattern.
func matchEntity(e *gomessage.Entity, pattern string, includeHeader bool) bool {
	if pattern == "" {
		return true
	}
	if includeHeader && matchHeaderFields(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchEntity(part, pattern, includeHeader) {
				return true
			}
		}
	}
	t, _, err := e.Header.ContentType()
	if err != nil && t == "" {
		t = "text/plain"
	}
	if !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	buf, err := io.ReadAll(io.LimitReader(e.Body, 64<<20))
	if err != nil {
		return false
	}
	return bytes.Contains(bytes.ToLower(buf), bytes.ToLower([]byte(pattern)))
}
