package imap

import (
	"sync"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/outpost-proxy/outpost/origin/mailstore"
)

// mailbox is the state of one selected folder shared by every session that has it selected:
// the message list in sequence order and the tracker that fans changes out to the sessions.
// It follows the store: a watch on the folder refreshes it whenever anything (SMTP delivery,
// POP3, another IMAP session) changes the folder.
type mailbox struct {
	s       *Server
	key     string
	box     *mailstore.Mailbox
	tracker *imapserver.MailboxTracker

	mu       sync.Mutex
	msgs     []mailstore.Message
	validity uint32
	uidNext  uint32

	refs int
	stop func()
	done chan struct{}
}

// openMailbox returns the shared state of a user's folder, creating it on first use.
func (s *Server) openMailbox(u *mailstore.User, name string) (*mailbox, error) {
	box, err := s.store.Mailbox(u, name)
	if err != nil {
		return nil, err
	}
	key := u.Address + "\x00" + box.Name
	s.mu.Lock()
	defer s.mu.Unlock()
	if mb := s.boxes[key]; mb != nil {
		mb.refs++
		return mb, mb.refresh()
	}
	snap, err := box.Scan()
	if err != nil {
		return nil, err
	}
	mb := &mailbox{s: s, key: key, box: box, tracker: imapserver.NewMailboxTracker(uint32(len(snap.Messages))),
		msgs: snap.Messages, validity: snap.UIDValidity, uidNext: snap.UIDNext, refs: 1, done: make(chan struct{})}
	ch, stop := s.store.Watch(u, box.Name)
	mb.stop = stop
	go mb.follow(ch)
	s.boxes[key] = mb
	return mb, nil
}

// release drops one session's reference; the last one stops the watch.
func (s *Server) release(mb *mailbox) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mb.refs--
	if mb.refs == 0 {
		delete(s.boxes, mb.key)
		mb.stop()
		close(mb.done)
	}
}

// follow refreshes the mailbox on every change notification until released.
func (mb *mailbox) follow(changes <-chan struct{}) {
	for {
		select {
		case <-changes:
			if err := mb.refresh(); err != nil {
				mb.s.log.Warn("imap: refresh", "mailbox", mb.box.Name, "err", err)
			}
		case <-mb.done:
			return
		}
	}
}

// refresh rescans the folder and queues EXPUNGE, FETCH FLAGS and EXISTS updates for every
// session, in that order (expunges first, highest sequence number first).
func (mb *mailbox) refresh() error {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	snap, err := mb.box.Scan()
	if err != nil {
		return err
	}
	present := make(map[string]mailstore.Message, len(snap.Messages))
	for _, m := range snap.Messages {
		present[m.Key] = m
	}
	for i := len(mb.msgs) - 1; i >= 0; i-- {
		if _, ok := present[mb.msgs[i].Key]; !ok {
			mb.tracker.QueueExpunge(uint32(i + 1))
			mb.msgs = append(mb.msgs[:i], mb.msgs[i+1:]...)
		}
	}
	for i := range mb.msgs {
		if now := present[mb.msgs[i].Key]; now.Flags != mb.msgs[i].Flags {
			mb.msgs[i].Flags = now.Flags
			mb.tracker.QueueMessageFlags(uint32(i+1), goimap.UID(now.UID), imapFlags(now.Flags), nil)
		}
	}
	var last uint32
	if n := len(mb.msgs); n > 0 {
		last = mb.msgs[n-1].UID
	}
	added := false
	for _, m := range snap.Messages {
		if m.UID > last {
			mb.msgs = append(mb.msgs, m)
			added = true
		}
	}
	if added {
		mb.tracker.QueueNumMessages(uint32(len(mb.msgs)))
	}
	mb.validity, mb.uidNext = snap.UIDValidity, snap.UIDNext
	return nil
}

// setFlagsLocked stores new flags for message i and tells the other sessions (source, the
// session that asked, reports the change itself). The caller holds mb.mu.
func (mb *mailbox) setFlagsLocked(i int, flags string, source *imapserver.SessionTracker) error {
	got, err := mb.box.SetFlags(mb.msgs[i].Key, flags)
	if err != nil {
		return err
	}
	if got != mb.msgs[i].Flags {
		mb.msgs[i].Flags = got
		mb.tracker.QueueMessageFlags(uint32(i+1), goimap.UID(mb.msgs[i].UID), imapFlags(got), source)
	}
	return nil
}

// selectDataLocked describes the mailbox for SELECT/EXAMINE (the caller holds mb.mu).
func (mb *mailbox) selectDataLocked() *goimap.SelectData {
	var firstUnseen uint32
	for i, m := range mb.msgs {
		if !hasFlag(m.Flags, 'S') {
			firstUnseen = uint32(i + 1)
			break
		}
	}
	return &goimap.SelectData{
		Flags:             systemFlags,
		PermanentFlags:    systemFlags,
		NumMessages:       uint32(len(mb.msgs)),
		FirstUnseenSeqNum: firstUnseen,
		UIDNext:           goimap.UID(mb.uidNext),
		UIDValidity:       mb.validity,
	}
}
