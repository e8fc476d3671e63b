package notice

import (
	"context"
	"fmt"
	"mime"
	"net"
	"net/smtp"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/api"
)

// sendMail mails the notice to the site through the configured relay
// (plain SMTP to a relay on the maker's network; the relay does TLS and
// authentication onward). Headers are built from checked values only: the
// address was validated when stored, the subject is encoded (RFC 2047).
func (s *Service) sendMail(ctx context.Context, c contacts, n api.Notice) error {
	if s.o.SMTP == nil {
		return fmt.Errorf("no SMTP relay is configured")
	}
	if c.Email == "" {
		return fmt.Errorf("the site has no e-mail address any more")
	}
	d := net.Dialer{Timeout: AttemptTimeout}
	conn, err := d.DialContext(ctx, "tcp", s.o.SMTP.Addr)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(AttemptTimeout))
	host, _, _ := net.SplitHostPort(s.o.SMTP.Addr)
	cl, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer cl.Close()
	if err := cl.Mail(s.o.SMTP.From); err != nil {
		return err
	}
	if err := cl.Rcpt(c.Email); err != nil {
		return err
	}
	w, err := cl.Data()
	if err != nil {
		return err
	}
	subject := mime.QEncoding.Encode("utf-8", fmt.Sprintf("[%s] Vigil security notice %s: %s", strings.ToUpper(n.Severity), n.ID, n.Title))
	body := strings.ReplaceAll(n.Text, "\r", "")
	// net/smtp's data writer dot-stuffs lines that start with ".".
	msg := "From: " + s.o.SMTP.From + "\r\nTo: " + c.Email + "\r\nSubject: " + subject +
		"\r\nDate: " + s.o.Now().UTC().Format(time.RFC1123Z) + "\r\nMessage-ID: <" + n.ID + "." + sanitizeLocal(c.Email) + "@vigil>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		strings.ReplaceAll(body, "\n", "\r\n") + "\r\n\r\nAcknowledge with: vigil notice ack " + n.ID + "\r\n"
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return cl.Quit()
}

func sanitizeLocal(addr string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, addr)
}
