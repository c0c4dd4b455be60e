package imap

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"syscall"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"
	"github.com/outpost-proxy/outpost/internal/diskspace"
	"github.com/outpost-proxy/outpost/origin/mailstore"
)

// session is one IMAP connection: imapserver calls one method per command.
type session struct {
	s         *Server
	conn      *imapserver.Conn
	user      *mailstore.User
	authFails int

	mb        *mailbox
	tracker   *imapserver.SessionTracker
	readOnly  bool
	searchRes goimap.UIDSet
}

var _ imapserver.SessionSASL = (*session)(nil)

// newSession starts a session for a new connection.
func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	s.m.sessions.Inc()
	return &session{s: s, conn: c}, nil, nil
}

// Close releases the selected mailbox.
func (ss *session) Close() error {
	ss.unselect()
	return nil
}

// Login checks a user name (local part or address) and password.
func (ss *session) Login(username, password string) error {
	u, err := ss.s.store.Directory().Authenticate(username, password)
	if err != nil {
		ss.authFails++
		ss.s.m.authFailures.Inc()
		if ss.authFails >= ss.s.opts.MaxAuthFailures {
			_ = ss.conn.Bye("Too many authentication failures")
		}
		return imapserver.ErrAuthFailed
	}
	ss.user = u
	return nil
}

// AuthenticateMechanisms lists the SASL mechanisms for AUTHENTICATE.
func (ss *session) AuthenticateMechanisms() []string { return []string{sasl.Plain} }

// Authenticate handles AUTHENTICATE PLAIN.
func (ss *session) Authenticate(mech string) (sasl.Server, error) {
	if !strings.EqualFold(mech, sasl.Plain) {
		return nil, &goimap.Error{Type: goimap.StatusResponseTypeNo, Text: "Unsupported mechanism"}
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && !strings.EqualFold(identity, username) {
			return imapserver.ErrAuthFailed
		}
		return ss.Login(username, password)
	}), nil
}

// storeError maps store errors to IMAP responses with response codes (RFC 5530). A full disk
// or quota is OVERQUOTA with Dovecot's "Not enough disk space"; a store that cannot be
// written at all (read-only file system, I/O error) is UNAVAILABLE.
func storeError(err error) error {
	code := goimap.ResponseCodeServerBug
	text := strings.TrimPrefix(err.Error(), "mailstore: ")
	switch {
	case errors.Is(err, mailstore.ErrNoMailbox):
		code = goimap.ResponseCodeNonExistent
	case errors.Is(err, mailstore.ErrMailboxExists):
		code = goimap.ResponseCodeAlreadyExists
	case errors.Is(err, mailstore.ErrBadName), errors.Is(err, mailstore.ErrInbox):
		code = goimap.ResponseCodeCannot
	case diskspace.IsFull(err):
		code, text = goimap.ResponseCodeOverQuota, "Not enough disk space"
	case errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EIO):
		code, text = goimap.ResponseCodeUnavailable, "Mail store cannot be written: "+text
	}
	return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: code, Text: text}
}

// Select opens a mailbox (EXAMINE sets ReadOnly).
func (ss *session) Select(name string, options *goimap.SelectOptions) (*goimap.SelectData, error) {
	ss.unselect()
	mb, err := ss.s.openMailbox(ss.user, name)
	if err != nil {
		return nil, storeError(err)
	}
	// The session's tracker and the SELECT data come from the same instant of the mailbox.
	mb.mu.Lock()
	defer mb.mu.Unlock()
	ss.mb, ss.tracker, ss.readOnly = mb, mb.tracker.NewSession(), options.ReadOnly
	return mb.selectDataLocked(), nil
}

// Unselect leaves the selected state without expunging.
func (ss *session) Unselect() error {
	ss.unselect()
	return nil
}

// unselect releases the selected mailbox, if any.
func (ss *session) unselect() {
	if ss.mb != nil {
		ss.tracker.Close()
		ss.s.release(ss.mb)
		ss.mb, ss.tracker, ss.searchRes = nil, nil, nil
	}
}

// Create makes a folder.
func (ss *session) Create(name string, _ *goimap.CreateOptions) error {
	if err := ss.s.store.Create(ss.user, strings.TrimSuffix(name, string(mailstore.Delimiter))); err != nil {
		return storeError(err)
	}
	return nil
}

// Delete removes a folder.
func (ss *session) Delete(name string) error {
	if err := ss.s.store.Delete(ss.user, name); err != nil {
		return storeError(err)
	}
	return nil
}

// Rename renames a folder and its children.
func (ss *session) Rename(from, to string, _ *goimap.RenameOptions) error {
	if err := ss.s.store.Rename(ss.user, from, to); err != nil {
		return storeError(err)
	}
	return nil
}

// Subscribe adds a folder to the subscriptions.
func (ss *session) Subscribe(name string) error {
	if _, err := ss.s.store.Mailbox(ss.user, name); err != nil {
		return storeError(err)
	}
	return ss.s.store.SetSubscribed(ss.user, name, true)
}

// Unsubscribe removes a folder from the subscriptions.
func (ss *session) Unsubscribe(name string) error {
	return ss.s.store.SetSubscribed(ss.user, name, false)
}

// List answers LIST and LSUB.
func (ss *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *goimap.ListOptions) error {
	if len(patterns) == 0 || len(patterns) == 1 && patterns[0] == "" {
		return w.WriteList(&goimap.ListData{Attrs: []goimap.MailboxAttr{goimap.MailboxAttrNoSelect}, Delim: mailstore.Delimiter})
	}
	folders, err := ss.s.store.Folders(ss.user)
	if err != nil {
		return storeError(err)
	}
	subs, _ := ss.s.store.Subscriptions(ss.user)
	subscribed := map[string]bool{}
	for _, n := range subs {
		subscribed[n] = true
	}
	for _, name := range folders {
		if options.SelectSubscribed && !subscribed[name] || !matchAny(name, ref, patterns) {
			continue
		}
		data := &goimap.ListData{Mailbox: name, Delim: mailstore.Delimiter, Attrs: []goimap.MailboxAttr{goimap.MailboxAttrHasNoChildren}}
		if hasChildren(folders, name) {
			data.Attrs[0] = goimap.MailboxAttrHasChildren
		}
		if subscribed[name] && options.ReturnSubscribed {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrSubscribed)
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// matchAny reports whether name matches one of the LIST patterns.
func matchAny(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if imapserver.MatchList(name, mailstore.Delimiter, ref, p) {
			return true
		}
	}
	return false
}

// hasChildren reports whether some folder is below name.
func hasChildren(folders []string, name string) bool {
	for _, f := range folders {
		if strings.HasPrefix(f, name+string(mailstore.Delimiter)) {
			return true
		}
	}
	return false
}

// Status answers STATUS.
func (ss *session) Status(name string, options *goimap.StatusOptions) (*goimap.StatusData, error) {
	box, err := ss.s.store.Mailbox(ss.user, name)
	if err != nil {
		return nil, storeError(err)
	}
	snap, err := box.Scan()
	if err != nil {
		return nil, storeError(err)
	}
	data := &goimap.StatusData{Mailbox: name}
	var unseen, deleted uint32
	var size int64
	for _, m := range snap.Messages {
		if !hasFlag(m.Flags, 'S') {
			unseen++
		}
		if hasFlag(m.Flags, 'T') {
			deleted++
		}
		size += m.Size
	}
	n, zero := uint32(len(snap.Messages)), uint32(0)
	if options.NumMessages {
		data.NumMessages = &n
	}
	if options.UIDNext {
		data.UIDNext = goimap.UID(snap.UIDNext)
	}
	if options.UIDValidity {
		data.UIDValidity = snap.UIDValidity
	}
	if options.NumUnseen {
		data.NumUnseen = &unseen
	}
	if options.NumDeleted {
		data.NumDeleted = &deleted
	}
	if options.Size {
		data.Size = &size
	}
	if options.NumRecent {
		data.NumRecent = &zero
	}
	return data, nil
}

// AppendLimit advertises APPENDLIMIT.
func (ss *session) AppendLimit() uint32 { return uint32(min(ss.s.opts.MaxMessageSize, 1<<32-1)) }

// Append stores a message in a folder.
func (ss *session) Append(name string, r goimap.LiteralReader, options *goimap.AppendOptions) (*goimap.AppendData, error) {
	box, err := ss.s.store.Mailbox(ss.user, name)
	if err != nil {
		e := storeError(err).(*goimap.Error)
		if errors.Is(err, mailstore.ErrNoMailbox) {
			e.Code = goimap.ResponseCodeTryCreate
		}
		return nil, e
	}
	if r.Size() > ss.s.opts.MaxMessageSize {
		return nil, &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeTooBig, Text: "message exceeds APPENDLIMIT"}
	}
	m, err := box.Append(io.LimitReader(r, ss.s.opts.MaxMessageSize), maildirFlags(options.Flags), options.Time)
	if err != nil {
		return nil, storeError(err)
	}
	return &goimap.AppendData{UID: goimap.UID(m.UID), UIDValidity: ss.validityOf(box)}, nil
}

// validityOf returns a folder's UIDVALIDITY.
func (ss *session) validityOf(box *mailstore.Mailbox) uint32 {
	snap, err := box.Scan()
	if err != nil {
		return 0
	}
	return snap.UIDValidity
}

// Poll reports pending changes of the selected mailbox (after commands and NOOP).
func (ss *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if ss.mb == nil {
		return nil
	}
	if err := ss.mb.refresh(); err != nil {
		ss.s.log.Warn("imap: refresh", "err", err)
	}
	return ss.tracker.Poll(w, allowExpunge)
}

// Idle streams changes of the selected mailbox until the client sends DONE (RFC 2177).
func (ss *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if ss.mb == nil {
		<-stop
		return nil
	}
	return ss.tracker.Idle(w, stop)
}

// Expunge removes the messages flagged \Deleted (restricted to uids for UID EXPUNGE).
func (ss *session) Expunge(w *imapserver.ExpungeWriter, uids *goimap.UIDSet) error {
	if ss.readOnly {
		// go-imap routes CLOSE here too and gives no way to tell it from EXPUNGE; CLOSE after
		// EXAMINE must succeed without expunging (RFC 3501 6.4.2), so both are a no-op.
		return nil
	}
	ss.mb.mu.Lock()
	var keys []string
	for _, m := range ss.mb.msgs {
		if hasFlag(m.Flags, 'T') && (uids == nil || uids.Contains(goimap.UID(m.UID))) {
			keys = append(keys, m.Key)
		}
	}
	ss.mb.mu.Unlock()
	if err := ss.mb.box.Remove(keys); err != nil {
		return storeError(err)
	}
	return ss.mb.refresh() // queues the EXPUNGE responses for every session, this one included
}

// errReadOnly refuses changes to a mailbox opened with EXAMINE.
var errReadOnly = &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeNoPerm, Text: "mailbox is read-only (EXAMINE)"}

// forEach calls f with the server sequence number index of every message in numSet (the
// caller holds mb.mu).
func (ss *session) forEach(numSet goimap.NumSet, f func(i int) error) error {
	numSet = ss.staticNumSet(numSet)
	for i, m := range ss.mb.msgs {
		var in bool
		switch set := numSet.(type) {
		case goimap.SeqSet:
			seq := ss.tracker.EncodeSeqNum(uint32(i + 1))
			in = seq != 0 && set.Contains(seq)
		case goimap.UIDSet:
			in = set.Contains(goimap.UID(m.UID))
		}
		if in {
			if err := f(i); err != nil {
				return err
			}
		}
	}
	return nil
}

// staticNumSet resolves "*" and the SEARCHRES "$" marker (the caller holds mb.mu).
func (ss *session) staticNumSet(numSet goimap.NumSet) goimap.NumSet {
	if goimap.IsSearchRes(numSet) {
		return ss.searchRes
	}
	switch set := numSet.(type) {
	case goimap.SeqSet:
		maxSeq := uint32(len(ss.mb.msgs))
		for i := range set {
			staticRange(&set[i].Start, &set[i].Stop, maxSeq)
		}
	case goimap.UIDSet:
		maxUID := uint32(0)
		if n := len(ss.mb.msgs); n > 0 {
			maxUID = ss.mb.msgs[n-1].UID
		}
		for i := range set {
			staticRange((*uint32)(&set[i].Start), (*uint32)(&set[i].Stop), maxUID)
		}
	}
	return numSet
}

// staticRange replaces 0 ("*") by the maximum and orders the range.
func staticRange(start, stop *uint32, maxVal uint32) {
	dyn := *start == 0 || *stop == 0
	if *start == 0 {
		*start = maxVal
	}
	if *stop == 0 {
		*stop = maxVal
	}
	if dyn && *start > *stop {
		*start, *stop = *stop, *start
	}
}

// load reads message i's content (the caller holds mb.mu).
func (ss *session) load(i int) []byte {
	buf, err := ss.mb.box.ReadAll(ss.mb.msgs[i].Key, ss.s.opts.MaxMessageSize+1<<20)
	if err != nil {
		return nil
	}
	return buf
}

// Fetch answers FETCH; a non-PEEK body section sets \Seen (unless EXAMINEd).
func (ss *session) Fetch(w *imapserver.FetchWriter, numSet goimap.NumSet, options *goimap.FetchOptions) error {
	markSeen := false
	for _, bs := range options.BodySection {
		markSeen = markSeen || !bs.Peek
	}
	ss.mb.mu.Lock()
	defer ss.mb.mu.Unlock()
	return ss.forEach(numSet, func(i int) error {
		if markSeen && !ss.readOnly && !hasFlag(ss.mb.msgs[i].Flags, 'S') {
			if err := ss.mb.setFlagsLocked(i, ss.mb.msgs[i].Flags+"S", nil); errors.Is(err, mailstore.ErrNoMessage) {
				return nil // removed meanwhile (POP3, another session): the EXPUNGE follows
			} else if err != nil {
				return storeError(err)
			}
		}
		var buf []byte
		if needsBody(options) {
			if buf = ss.load(i); buf == nil {
				return nil // expunged meanwhile: skip, the EXPUNGE follows
			}
		}
		rw := w.CreateMessage(ss.tracker.EncodeSeqNum(uint32(i + 1)))
		return fetchMessage(rw, ss.mb.msgs[i], buf, options)
	})
}

// Store answers STORE: changes flags and, unless .SILENT, reports them.
func (ss *session) Store(w *imapserver.FetchWriter, numSet goimap.NumSet, flags *goimap.StoreFlags, _ *goimap.StoreOptions) error {
	if ss.readOnly {
		return errReadOnly
	}
	ss.mb.mu.Lock()
	defer ss.mb.mu.Unlock()
	return ss.forEach(numSet, func(i int) error {
		if err := ss.mb.setFlagsLocked(i, applyStore(ss.mb.msgs[i].Flags, flags), ss.tracker); errors.Is(err, mailstore.ErrNoMessage) {
			return nil // removed meanwhile: the EXPUNGE follows
		} else if err != nil {
			return storeError(err)
		}
		if flags.Silent {
			return nil
		}
		rw := w.CreateMessage(ss.tracker.EncodeSeqNum(uint32(i + 1)))
		return fetchMessage(rw, ss.mb.msgs[i], nil, &goimap.FetchOptions{Flags: true})
	})
}

// Search answers SEARCH and UID SEARCH.
func (ss *session) Search(kind imapserver.NumKind, criteria *goimap.SearchCriteria, options *goimap.SearchOptions) (*goimap.SearchData, error) {
	ss.mb.mu.Lock()
	defer ss.mb.mu.Unlock()
	ss.staticCriteria(criteria)
	var data goimap.SearchData
	var seqs goimap.SeqSet
	var uids goimap.UIDSet
	for i, m := range ss.mb.msgs {
		seq := ss.tracker.EncodeSeqNum(uint32(i + 1))
		if !matches(m, seq, criteria, func() []byte { return ss.load(i) }) {
			continue
		}
		uids.AddNum(goimap.UID(m.UID))
		num := m.UID
		if kind == imapserver.NumKindSeq {
			if seq == 0 {
				continue
			}
			seqs.AddNum(seq)
			num = seq
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
	}
	if kind == imapserver.NumKindSeq {
		data.All = seqs
	} else {
		data.All = uids
	}
	if options.ReturnSave {
		ss.searchRes = uids
	}
	return &data, nil
}

// staticCriteria resolves "*" and "$" inside search criteria.
func (ss *session) staticCriteria(c *goimap.SearchCriteria) {
	var seqs []goimap.SeqSet
	for _, s := range c.SeqNum {
		switch set := ss.staticNumSet(s).(type) {
		case goimap.SeqSet:
			seqs = append(seqs, set)
		case goimap.UIDSet:
			c.UID = append(c.UID, set)
		}
	}
	c.SeqNum = seqs
	for i := range c.UID {
		c.UID[i] = ss.staticNumSet(c.UID[i]).(goimap.UIDSet)
	}
	for i := range c.Not {
		ss.staticCriteria(&c.Not[i])
	}
	for i := range c.Or {
		ss.staticCriteria(&c.Or[i][0])
		ss.staticCriteria(&c.Or[i][1])
	}
}

// Copy copies messages to another folder (UIDPLUS COPYUID data).
func (ss *session) Copy(numSet goimap.NumSet, dest string) (*goimap.CopyData, error) {
	data, _, err := ss.copy(numSet, dest)
	return data, err
}

// Move answers MOVE and UID MOVE (RFC 6851): the messages are copied (an untagged OK with
// COPYUID), then removed from the selected folder; the EXPUNGE responses reach this session
// (before the tagged OK) and the others the way EXPUNGE's do. A failed copy moves nothing.
func (ss *session) Move(w *imapserver.MoveWriter, numSet goimap.NumSet, dest string) error {
	if ss.readOnly {
		return errReadOnly
	}
	data, keys, err := ss.copy(numSet, dest)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil // nothing matched (e.g. UIDs already gone): nothing to report
	}
	if err := w.WriteCopyData(data); err != nil {
		return err
	}
	if err := ss.mb.box.Remove(keys); err != nil {
		return storeError(err)
	}
	return ss.mb.refresh() // queues the EXPUNGE responses for every session, this one included
}

// copy appends the messages of numSet to dest and returns the COPYUID data and the source
// messages' store keys.
func (ss *session) copy(numSet goimap.NumSet, dest string) (*goimap.CopyData, []string, error) {
	box, err := ss.s.store.Mailbox(ss.user, dest)
	if err != nil {
		e := storeError(err).(*goimap.Error)
		if errors.Is(err, mailstore.ErrNoMailbox) {
			e.Code = goimap.ResponseCodeTryCreate
		}
		return nil, nil, e
	}
	ss.mb.mu.Lock()
	defer ss.mb.mu.Unlock()
	var src, dst goimap.UIDSet
	var keys []string
	err = ss.forEach(numSet, func(i int) error {
		buf := ss.load(i)
		if buf == nil {
			return nil
		}
		m, err := box.Append(bytes.NewReader(buf), ss.mb.msgs[i].Flags, ss.mb.msgs[i].Date)
		if err != nil {
			return storeError(err)
		}
		src.AddNum(goimap.UID(ss.mb.msgs[i].UID))
		dst.AddNum(goimap.UID(m.UID))
		keys = append(keys, ss.mb.msgs[i].Key)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return &goimap.CopyData{UIDValidity: ss.validityOf(box), SourceUIDs: src, DestUIDs: dst}, keys, nil
}
