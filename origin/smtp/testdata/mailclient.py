#!/usr/bin/env python3
"""Independent mail clients for Outpost's acceptance tests (python3 stdlib only).

usage: mailclient.py COMMAND HOST PORT ARGS...
  send HOST PORT FROM TO SUBJECT [USER PASS]   send a text message (AUTH when USER is given)
  mime HOST PORT FROM TO ATTACHMENT OUT         send multipart with a base64 attachment; write
                                                the exact bytes sent to OUT
  poplist HOST PORT USER PASS                   print "n size uid" per message (keeps mail)
  popretr HOST PORT USER PASS N OUT             write message N to OUT (keeps mail)
  imapfetch HOST PORT USER PASS SUBJECT OUT     SEARCH by subject in INBOX, write BODY[] to OUT
"""
import email.message
import email.policy
import imaplib
import poplib
import smtplib
import sys


def send(host, port, frm, to, subject, user=None, password=None):
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = frm, to, subject
    msg.set_content("Hello from python smtplib.\n.leading dot line\n")
    with smtplib.SMTP(host, int(port), timeout=30) as s:
        s.ehlo("python.test")
        if user:
            s.login(user, password)
        s.send_message(msg)


def mime(host, port, frm, to, attachment, out):
    msg = email.message.EmailMessage(policy=email.policy.SMTP)
    msg["From"], msg["To"], msg["Subject"] = frm, to, "MIME round trip"
    msg.set_content("See the attachment.\n")
    with open(attachment, "rb") as f:
        msg.add_attachment(f.read(), maintype="application", subtype="octet-stream", filename="blob.bin")
    data = msg.as_bytes()
    with open(out, "wb") as f:
        f.write(data)
    with smtplib.SMTP(host, int(port), timeout=30) as s:
        s.sendmail(frm, [to], data)


def poplist(host, port, user, password):
    p = poplib.POP3(host, int(port), timeout=30)
    p.user(user)
    p.pass_(password)
    sizes = p.list()[1]
    uids = p.uidl()[1]
    for s, u in zip(sizes, uids):
        n, size = s.decode().split()
        print(n, size, u.decode().split()[1])
    p.quit()


def popretr(host, port, user, password, n, out):
    p = poplib.POP3(host, int(port), timeout=30)
    p.user(user)
    p.pass_(password)
    lines = p.retr(int(n))[1]
    with open(out, "wb") as f:
        f.write(b"\r\n".join(lines) + b"\r\n")
    p.quit()


def imapfetch(host, port, user, password, subject, out):
    m = imaplib.IMAP4(host, int(port), timeout=30)
    m.login(user, password)
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", '"%s"' % subject)
    nums = data[0].split()
    if not nums:
        sys.exit("no message with subject " + subject)
    typ, data = m.fetch(nums[-1], "(BODY.PEEK[])")
    with open(out, "wb") as f:
        f.write(data[0][1])
    m.logout()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"send": send, "mime": mime, "poplist": poplist, "popretr": popretr, "imapfetch": imapfetch}[cmd](*args)
