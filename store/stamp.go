package store

import (
	"bytes"
	"fmt"
	"strconv"
	"time"
)

// LastUpdatedFormat is the FHIR instant layout the store writes into
// meta.lastUpdated (millisecond precision, UTC).
const LastUpdatedFormat = "2006-01-02T15:04:05.000Z"

// StampMeta returns body with meta.versionId and meta.lastUpdated set. body is
// canonical JSON as the emit path (conformance/fhirjson) writes it: an object
// whose first member is "id", optionally followed by "meta". The two members are
// inserted at the start of meta (creating meta when absent), so the stamp costs
// one copy and no parse.
func StampMeta(body []byte, version int64, lastUpdated time.Time) ([]byte, error) {
	if len(body) < 2 || body[0] != '{' || !bytes.HasPrefix(body[1:], []byte(`"id":"`)) {
		return nil, fmt.Errorf("store: stamp meta: body does not start with an id member")
	}
	end := bytes.IndexByte(body[7:], '"')
	if end < 0 {
		return nil, fmt.Errorf("store: stamp meta: unterminated id")
	}
	afterID := 7 + end + 1 // index just past the closing quote of the id value
	stamp := make([]byte, 0, 64)
	stamp = append(stamp, `"versionId":"`...)
	stamp = strconv.AppendInt(stamp, version, 10)
	stamp = append(stamp, `","lastUpdated":"`...)
	stamp = lastUpdated.UTC().AppendFormat(stamp, LastUpdatedFormat)
	stamp = append(stamp, '"')

	out := make([]byte, 0, len(body)+len(stamp)+10)
	rest := body[afterID:]
	switch {
	case bytes.HasPrefix(rest, []byte(`,"meta":{}`)):
		return nil, fmt.Errorf("store: stamp meta: empty meta")
	case bytes.HasPrefix(rest, []byte(`,"meta":{`)):
		out = append(out, body[:afterID+len(`,"meta":{`)]...)
		out = append(out, stamp...)
		out = append(out, ',')
		out = append(out, rest[len(`,"meta":{`):]...)
	default:
		out = append(out, body[:afterID]...)
		out = append(out, `,"meta":{`...)
		out = append(out, stamp...)
		out = append(out, '}')
		out = append(out, rest...)
	}
	return out, nil
}
