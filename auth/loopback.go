package auth

import (
	"net"
	"strings"
)

// IsLoopback reports whether hostport names the loopback interface: an IP
// address in 127.0.0.0/8 or ::1, or the name localhost (RFC 6761 §6.3). It
// takes a bare host (url.URL.Hostname) or host:port (http.Request.RemoteAddr,
// url.URL.Host). It is the product's one loopback rule: /metrics on the public
// listener answers loopback peers only (docs/design/security.md PRIV-5), and
// registered redirect and launch URLs may use plain http only on loopback
// hosts (RFC 8252 §8.3). A peer address comes from the TCP connection: callers
// never feed it forwarding headers.
func IsLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
