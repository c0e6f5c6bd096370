package auth

import "context"

// callerKey is the context.Context key of the verified caller.
type callerKey struct{}

// NewContext returns ctx carrying info, the request's verified access token.
// Authenticate calls it once per request; handlers read the caller back with
// FromContext.
func NewContext(ctx context.Context, info *AccessInfo) context.Context {
	return context.WithValue(ctx, callerKey{}, info)
}

// FromContext returns the verified access token of the request whose context
// is ctx, and whether there is one. Without one the request was not
// authenticated: callers deny (docs/design/security.md PRIV-1).
func FromContext(ctx context.Context) (*AccessInfo, bool) {
	info, ok := ctx.Value(callerKey{}).(*AccessInfo)
	return info, ok && info != nil
}
