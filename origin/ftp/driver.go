package ftp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"golang.org/x/crypto/bcrypt"

	"github.com/outpost-proxy/outpost/internal/config"
)

// driver is the library's MainDriver: greeting, login and per-session file systems.
type driver struct {
	srv *Server
}

// session is what the driver keeps per client (the library's ClientContext extra).
type session struct {
	conn *controlConn
	fs   *jailFS
	user string
}

// GetSettings returns the server's settings.
func (d *driver) GetSettings() (*ftpserver.Settings, error) { return d.srv.settings(), nil }

// ClientConnected links the library's context to our control connection and greets.
func (d *driver) ClientConnected(cc ftpserver.ClientContext) (string, error) {
	sess := &session{}
	if c := d.srv.lookup(cc); c != nil {
		sess.conn = c
		c.cc.Store(cc)
	}
	cc.SetExtra(sess)
	return d.srv.cfg.Banner, nil
}

// ClientDisconnected releases the session's root.
func (d *driver) ClientDisconnected(cc ftpserver.ClientContext) {
	if sess, ok := cc.Extra().(*session); ok && sess.fs != nil {
		sess.fs.root.Close()
		d.srv.env.Logger.Debug("ftp session ended", "user", sess.user, "remote", cc.RemoteAddr().String())
	}
}

// PreAuthUser turns locked-out addresses away at USER.
func (d *driver) PreAuthUser(cc ftpserver.ClientContext, _ string) error {
	if d.srv.guard.locked(remoteIP(cc)) {
		d.srv.metrics.logins.WithLabelValues("locked_out").Inc()
		return errLockedOut
	}
	return nil
}

// errLockedOut is the 530 reason for an address with too many failed logins.
var errLockedOut = errors.New("too many failed logins from your address; try again later")

// AuthUser checks the credentials and opens the user's jailed file system.
func (d *driver) AuthUser(cc ftpserver.ClientContext, user, pass string) (ftpserver.ClientDriver, error) {
	ip := remoteIP(cc)
	if d.srv.guard.locked(ip) {
		d.srv.metrics.logins.WithLabelValues("locked_out").Inc()
		return nil, errLockedOut
	}
	home, readOnly, ok := d.check(user, pass)
	if !ok {
		d.srv.guard.fail(ip)
		d.srv.metrics.logins.WithLabelValues("failure").Inc()
		d.srv.env.Logger.Info("ftp login failed", "user", user, "remote", ip.String())
		time.Sleep(d.srv.cfg.LoginFailureDelay)
		return nil, errors.New("login incorrect")
	}
	root, err := os.OpenRoot(filepath.Join(d.srv.dir, home))
	if err != nil {
		return nil, fmt.Errorf("home directory unavailable: %w", err)
	}
	d.srv.guard.succeed(ip)
	d.srv.metrics.logins.WithLabelValues("success").Inc()
	d.srv.env.Logger.Info("ftp login", "user", user, "remote", ip.String(), "read_only", readOnly)
	fs := &jailFS{root: root, readOnly: readOnly, maxUpload: int64(d.srv.cfg.MaxUploadSize), stats: &d.srv.stats}
	if sess, ok := cc.Extra().(*session); ok {
		sess.fs, sess.user = fs, user
		if sess.conn != nil {
			sess.conn.loggedIn.Store(true)
		}
	}
	return fs, nil
}

// newDummyHash returns a hash to compare against when the user does not exist, so unknown
// and known users take as long: it has the cost of the configured users' hashes.
func newDummyHash(users map[string]config.FTPUser) ([]byte, error) {
	cost := bcrypt.DefaultCost
	for _, u := range users {
		if c, err := bcrypt.Cost([]byte(u.PasswordHash)); err == nil {
			cost = c
			break
		}
	}
	return bcrypt.GenerateFromPassword([]byte("outpost-no-such-user"), cost)
}

// check validates a login and returns the home directory (relative to the FTP root) and
// whether the session is read-only.
func (d *driver) check(user, pass string) (home string, readOnly, ok bool) {
	if d.srv.cfg.Anonymous && isAnonymous(user) {
		return anonymousHome, true, true
	}
	u, found := d.srv.users[user]
	hash := d.srv.dummyHash
	if found {
		hash = []byte(u.PasswordHash)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil || !found {
		return "", false, false
	}
	return userHome(u), u.ReadOnly, true
}

// isAnonymous reports the conventional anonymous login names.
func isAnonymous(user string) bool {
	return strings.EqualFold(user, "anonymous") || strings.EqualFold(user, "ftp")
}

// GetTLSConfig reports that this server does not offer FTPS.
func (d *driver) GetTLSConfig() (*tls.Config, error) {
	return nil, errors.New("TLS is not configured on this server")
}

// QuitMessage is the 221 text.
func (d *driver) QuitMessage() string { return "Goodbye." }

// remoteIP is the client's address.
func remoteIP(cc ftpserver.ClientContext) netip.Addr {
	ap, err := netip.ParseAddrPort(cc.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// lookup finds the control connection behind a library context.
func (s *Server) lookup(cc ftpserver.ClientContext) *controlConn {
	remote := cc.RemoteAddr().String()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.RemoteAddr().String() == remote {
			return c
		}
	}
	return nil
}
