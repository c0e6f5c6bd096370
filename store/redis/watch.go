package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// watch lets a replica know the read cache's stamp values without a round
// trip (docs/design/security.md CACHE-3). One per Ephemeral, started on
// first use; shared by every Cache of the Ephemeral.
//
// Every Bump publishes the stamps it incremented, with their new values and
// a sequence number, on the invalidation channel, in the same script as the
// increments (Cache.Bump). A replica that wants to trust its mirror of the
// stamps (Known) holds a lease: a member of a sorted set scored with its
// expiry in Redis time, renewed after each pong on its subscription, so
// only while the subscription answers. Bump's script lists the live leases,
// and Bump returns only once every listed replica has acknowledged the
// sequence number (after applying the message to its mirror) or its lease
// has expired: a lease that seems to end is read again, since a replica
// may have renewed it after a pong that came before the message, and a
// renewed one is waited on. Acknowledgements are published and kept in a
// hash, which a writer whose own subscription is down reads instead. So
// when a write is acknowledged, every replica that may answer from its
// mirror has applied the write's new stamp values.
//
// A replica trusts its mirror only while its subscription is confirmed and
// its lease is held, by its own conservative clock (the lease's TTL from
// before the renewal was sent, less a margin). The mirror learns values
// only from messages and from stamp reads (MGET) sent after the
// subscription was confirmed and while the lease was held, and a message
// is applied as the maximum of the two, since stamps only grow; a message
// updates only the stamps the mirror holds, and a stamp read overtaken by
// a message is not learned (it could be older than the message). Anything
// that may lose a message (the subscription dropped or reconnecting, the
// lease lapsed in Redis, the mirror outgrowing its bound) starts a new
// session: the mirror is emptied and every stamp is read again.
type watch struct {
	c                     *goredis.Client
	inv, ack, seq, leases string // channels and keys (full names)
	acked                 string // hash of each replica's last acknowledgement
	stamps                string // prefix of stamp counters
	id                    string // this replica's lease member
	marksKey              string // sorted set of the marked keys, scored with their expiries
	prefix                string // of every key (a marked key's value)

	startOnce sync.Once
	ctx       context.Context
	cancel    context.CancelFunc
	ps        *goredis.PubSub
	pongs     chan struct{} // subscriber -> leaser: the subscription answered
	acks      chan struct{} // subscriber -> acker: a message was applied
	done      sync.WaitGroup

	mu sync.RWMutex
	// gen changes whenever the mirror cannot be trusted to have seen every
	// message since its values were learned: in-flight reads of an older
	// gen learn nothing.
	gen        uint64
	subscribed bool      // both channels confirmed in this gen
	until      time.Time // the lease holds until then (local clock)
	wanted     bool      // a near cache asked for Known: hold a lease
	mirror     stampMirror
	messages   uint64 // invalidation messages applied (in any gen)
	applied    int64  // highest sequence applied in this subscription
	// acked is the highest sequence each replica acknowledged, as heard on
	// this subscription; cleared when it drops.
	heardAcks map[string]int64
	ackWake   chan struct{} // closed on every acknowledgement heard

	// The mirror of the marked keys (Mark, Marked; docs/design/security.md
	// INT-4): every key marked in Redis and not yet expired there, once
	// loaded in this gen (marksLoaded), kept current by the messages since.
	// Keys are only ever added, so a load and the messages applied during
	// it combine as a union.
	marksWanted bool // Marked was asked: load the marks in every session
	marksLoaded bool // marks holds every marked key (in this gen)
	marks       map[string]struct{}

	// The stamps loaded into the mirror in every session (Preload; the
	// read cache's epoch and resource buckets, CACHE-4). While a load is
	// in flight (recording), apply keeps the highest value each message
	// names of a stamp the mirror does not hold in recent, which the load
	// then merges: the load learns values read after its session began, and
	// the messages since, whatever their order.
	preload   preloadSet
	preloaded bool
	recording bool
	recent    map[string]uint64
}

const (
	// leaseTTL is how long a lease lives without renewal: the longest a
	// write waits for a replica that stopped answering.
	leaseTTL = 750 * time.Millisecond
	// leaseMargin is taken off the lease's end on the replica's own clock.
	leaseMargin = 100 * time.Millisecond
	// pingEvery is how often the subscription is pinged; each pong renews
	// the lease.
	pingEvery = 150 * time.Millisecond
	// ackPoll and ackPollUnsubscribed are how often a waiting Bump reads
	// the acknowledgements' hash, with its own subscription up or down.
	ackPoll             = 50 * time.Millisecond
	ackPollUnsubscribed = 5 * time.Millisecond
	// mirrorMax bounds the mirror's stamps (those near hits asked for, at
	// most the 65,536 resource buckets and a few thousand others in
	// practice); past it, a new session.
	mirrorMax = 1 << 17
	// marksMax bounds the mirrored marks (revoked grants of the last hour);
	// past it Marked declines (the caller reads Redis) until a session
	// whose load fits.
	marksMax = 1 << 20
)

func newWatch(c *goredis.Client, prefix string) *watch {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &watch{
		c: c, inv: prefix + "cache:inv", ack: prefix + "cache:ack", seq: prefix + "cache:seq",
		leases: prefix + "cache:leases", acked: prefix + "cache:acks", stamps: prefix + "cache:s:", id: hex.EncodeToString(b[:]),
		mirror: newStampMirror(), heardAcks: map[string]int64{}, ackWake: make(chan struct{}),
		marksKey: prefix + "marks", prefix: prefix, marks: map[string]struct{}{},
	}
}

// start subscribes and starts the watch's goroutines, once.
func (w *watch) start() {
	w.startOnce.Do(func() {
		w.ctx, w.cancel = context.WithCancel(context.Background())
		w.pongs = make(chan struct{}, 1)
		w.acks = make(chan struct{}, 1)
		// No channels yet: nothing is sent here, on a caller's request
		// path; the subscriber subscribes.
		w.ps = w.c.Subscribe(w.ctx)
		w.done.Add(3)
		go w.subscriber()
		go w.leaser()
		go w.acker()
	})
}

// close stops the goroutines and gives the lease up.
func (w *watch) close() {
	started := false
	w.startOnce.Do(func() {}) // no start after close
	if w.cancel != nil {
		started = true
		w.cancel()
		_ = w.ps.Close()
	}
	if !started {
		return
	}
	w.done.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	_ = w.c.ZRem(ctx, w.leases, w.id).Err()
	_ = w.c.HDel(ctx, w.acked, w.id).Err()
}

// newSession forgets the mirror (w.mu held).
func (w *watch) newSession() {
	w.gen++
	w.mirror.clear()
	clear(w.marks)
	w.marksLoaded = false
	w.preloaded = false
}

// subscriber reads the subscription: confirmations, invalidation
// messages, acknowledgements and pongs.
func (w *watch) subscriber() {
	defer w.done.Done()
	// Remembered even when it fails: every reconnection subscribes again.
	_ = w.ps.Subscribe(w.ctx, w.inv, w.ack)
	for {
		msg, err := w.ps.Receive(w.ctx)
		if err != nil {
			w.mu.Lock()
			if w.subscribed {
				w.subscribed = false
				w.newSession()
				// A restarted Redis counts sequences from 0 again.
				clear(w.heardAcks)
				w.applied = 0
			}
			w.mu.Unlock()
			if w.ctx.Err() != nil {
				return
			}
			// The next Receive reconnects and subscribes again.
			select {
			case <-w.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" && m.Count == 2 {
				// A new connection (go-redis reconnects on its own, also
				// from a failed Ping): whatever was published since the
				// last one was missed.
				w.mu.Lock()
				w.newSession()
				clear(w.heardAcks)
				w.applied = 0
				w.subscribed = true
				w.mu.Unlock()
				w.pong() // renew (or take) the lease now
			}
		case *goredis.Pong:
			// The ping carried the sequence read before it was sent: every
			// message published up to it was delivered before this pong,
			// and applied, or missed while unsubscribed (and its stamps
			// then read afresh): acknowledge it.
			if n, err := strconv.ParseInt(m.Payload, 10, 64); err == nil {
				w.mu.Lock()
				if w.subscribed && n > w.applied {
					w.applied = n
				}
				w.mu.Unlock()
			}
			w.pong()
			select {
			case w.acks <- struct{}{}:
			default:
			}
		case *goredis.Message:
			if m.Channel == w.inv {
				w.apply(m.Payload)
			} else {
				w.heard(m.Payload)
			}
		}
	}
}

func (w *watch) pong() {
	select {
	case w.pongs <- struct{}{}:
	default:
	}
}

// apply applies an invalidation message, "seq name=value ...", to the
// mirror, and has it acknowledged.
func (w *watch) apply(payload string) {
	head, rest, _ := strings.Cut(payload, " ")
	seq, err := strconv.ParseInt(head, 10, 64)
	w.mu.Lock()
	if err != nil {
		w.newSession() // a message not understood: trust nothing learned so far
		w.mu.Unlock()
		return
	}
	for rest != "" {
		var pair string
		pair, rest, _ = strings.Cut(rest, " ")
		if key, ok := strings.CutPrefix(pair, "+"); ok && key != "" {
			// A marked key (Mark): learned whether loaded yet or not, as
			// the load and the messages make a union.
			if len(w.marks) >= marksMax {
				w.newSession() // past the bound: a new session, whose load declines
			}
			w.marks[key] = struct{}{}
			continue
		}
		name, val, ok := strings.Cut(pair, "=")
		v, err := strconv.ParseUint(val, 10, 64)
		if !ok || err != nil {
			w.newSession()
			break
		}
		// Only stamps the mirror holds: one it does not is read from
		// Redis when needed (learn drops a read that a message overtook),
		// or merged into a Preload's load in flight.
		if old, ok := w.mirror.get(name); ok {
			if v > old {
				w.mirror.set(name, v)
			}
		} else if w.recording && v > w.recent[name] {
			w.recent[name] = v
		}
	}
	w.messages++
	if seq > w.applied {
		w.applied = seq
	}
	w.mu.Unlock()
	select {
	case w.acks <- struct{}{}:
	default:
	}
}

// heard records an acknowledgement, "id seq", and wakes the waiting Bumps.
func (w *watch) heard(payload string) {
	id, s, _ := strings.Cut(payload, " ")
	seq, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return
	}
	w.mu.Lock()
	if seq > w.heardAcks[id] {
		w.heardAcks[id] = seq
	}
	close(w.ackWake)
	w.ackWake = make(chan struct{})
	w.mu.Unlock()
}

// acker publishes this replica's acknowledgement of the highest sequence
// applied, coalescing bursts of messages into one.
func (w *watch) acker() {
	defer w.done.Done()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-w.acks:
		}
		w.mu.RLock()
		seq := w.applied
		w.mu.RUnlock()
		if seq == 0 {
			continue
		}
		// Also sent after every pong, unchanged or not: a writer whose
		// subscription reconnected meanwhile hears it again; and kept in
		// a hash, for a writer whose subscription is down (it polls).
		ctx, cancel := context.WithTimeout(w.ctx, ioTimeout)
		_ = ackScript.Run(ctx, w.c, []string{w.acked}, w.id, seq, w.ack).Err()
		cancel()
	}
}

// ackScript records the acknowledgement ARGV[2] of the replica ARGV[1] in
// the hash KEYS[1] and publishes "id seq" on the channel ARGV[3].
var ackScript = goredis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1] .. ' ' .. ARGV[2])
return 1
`)

// leaseScript adds or renews the lease ARGV[1] for ARGV[2] ms in the
// sorted set KEYS[1], removes expired leases (and their replicas'
// acknowledgements from the hash KEYS[3]), and returns whether the lease
// was live before, and the current sequence number KEYS[2].
var leaseScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)
if #dead > 0 then
  redis.call('HDEL', KEYS[3], unpack(dead))
  redis.call('ZREM', KEYS[1], unpack(dead))
end
local live = 0
if old and tonumber(old) > now then live = 1 end
return {live, tonumber(redis.call('GET', KEYS[2]) or '0')}
`)

// leaser pings the subscription, each ping carrying the sequence number
// read by the last renewal (acknowledged when its pong comes back), and
// renews the lease after each pong, while a near cache wants it.
func (w *watch) leaser() {
	defer w.done.Done()
	tick := time.NewTicker(pingEvery)
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-tick.C:
			if w.ctx.Err() == nil {
				_ = w.ps.Ping(w.ctx, strconv.FormatInt(last, 10))
			}
			continue
		case <-w.pongs:
		}
		w.mu.RLock()
		wanted, subscribed, gen := w.wanted, w.subscribed, w.gen
		w.mu.RUnlock()
		if !subscribed {
			continue
		}
		ttl := leaseTTL
		if !wanted {
			ttl = 0 // no lease: acknowledge the sequence only
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(w.ctx, ioTimeout)
		res, err := leaseScript.Run(ctx, w.c, []string{w.leases, w.seq, w.acked}, w.id, ttl.Milliseconds()).Int64Slice()
		cancel()
		if err != nil || len(res) != 2 {
			continue
		}
		w.mu.Lock()
		load, preload := false, false
		if w.gen == gen && w.subscribed {
			if wanted {
				if res[0] == 0 {
					// The lease lapsed in Redis: writes meanwhile did not
					// wait for this replica.
					w.newSession()
				}
				w.until = sent.Add(leaseTTL - leaseMargin)
			}
			load = wanted && w.marksWanted && !w.marksLoaded
			preload = wanted && w.preload.len() > 0 && !w.preloaded
			gen = w.gen
		}
		w.mu.Unlock()
		last = res[1]
		if load {
			w.loadMarks(gen)
		}
		if preload {
			w.loadStamps(gen)
		}
	}
}

// preloadChunk is how many stamps one MGET of loadStamps reads.
const preloadChunk = 8192

// setPreload has every session of the watch load names into the mirror
// (the first call's names; later calls change nothing).
func (w *watch) setPreload(names []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.preload.len() == 0 && len(names) > 0 && len(names) <= mirrorMax*3/4 {
		w.preload = newPreloadSet(names)
		w.recent = map[string]uint64{}
	}
}

// loadStamps reads the Preload stamps in MGETs sent after the session gen
// began (subscription confirmed, lease held) and learns them, each as the
// highest of the value read and the values of the messages applied since
// the first MGET was sent (kept in recent): stamps only grow, and every
// message since the read is either counted there or was applied to a stamp
// the mirror already held. A changed session learns nothing.
func (w *watch) loadStamps(gen uint64) {
	w.mu.Lock()
	if w.gen != gen || w.preloaded {
		w.mu.Unlock()
		return
	}
	names := w.preload // never changed once set
	w.recording = true
	clear(w.recent)
	w.mu.Unlock()
	total := names.len()
	vals := make([]any, 0, total)
	ok := true
	for i := 0; i < total && ok; i += preloadChunk {
		keys := make([]string, min(preloadChunk, total-i))
		for j := range keys {
			keys[j] = w.stamps + names.name(i+j)
		}
		ctx, cancel := context.WithTimeout(w.ctx, ioTimeout)
		v, err := w.c.MGet(ctx, keys...).Result()
		cancel()
		ok = err == nil && len(v) == len(keys)
		vals = append(vals, v...)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.recording = false
	defer clear(w.recent)
	if !ok || w.gen != gen || !w.subscribed || w.mirror.len()+total > mirrorMax {
		return // tried again after the next renewal
	}
	for i := range total {
		name := names.name(i)
		var v uint64
		if s, isStr := vals[i].(string); isStr {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return
			}
			v = n
		}
		v = max(v, w.recent[name])
		if old, held := w.mirror.get(name); !held || v > old {
			w.mirror.set(name, v)
		}
	}
	w.preloaded = true
}

// marksScript returns the members of the sorted set KEYS[1] that have not
// expired by Redis time.
var marksScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
`)

// loadMarks reads every marked key, in a read sent after the session gen
// began (subscription confirmed, lease held): with the messages applied in
// the session, before and after, the mirror then holds every key marked
// before it was sent or since. A changed session learns nothing.
func (w *watch) loadMarks(gen uint64) {
	ctx, cancel := context.WithTimeout(w.ctx, ioTimeout)
	keys, err := marksScript.Run(ctx, w.c, []string{w.marksKey}).StringSlice()
	cancel()
	if err != nil || len(keys) > marksMax {
		return // tried again after the next renewal
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gen != gen || !w.subscribed || len(w.marks)+len(keys) > marksMax {
		return
	}
	for _, k := range keys {
		w.marks[k] = struct{}{}
	}
	w.marksLoaded = true
}

// marked reports whether key is marked, from the mirror, and whether the
// mirror can vouch for the answer: subscribed, the lease held, the marks
// loaded in this session. The first call has the watch take a lease and
// load the marks.
func (w *watch) marked(key string) (marked, ok bool) {
	w.mu.RLock()
	if !w.marksWanted {
		w.mu.RUnlock()
		w.start()
		w.mu.Lock()
		w.wanted, w.marksWanted = true, true
		w.mu.Unlock()
		w.pong()
		return false, false
	}
	defer w.mu.RUnlock()
	if !w.marksLoaded || !w.subscribed || !time.Now().Before(w.until) {
		return false, false
	}
	_, marked = w.marks[key]
	return marked, true
}

// markScript sets the key KEYS[1] (value "1", expiring in ARGV[3] ms),
// adds ARGV[2] (its name without the prefix) to the sorted set KEYS[2]
// scored with its expiry and drops the expired members, increments the
// sequence KEYS[3], publishes "seq +name" on the channel ARGV[1], and
// returns what bumpScript returns: one atomic step, so a load of the marks
// sees the key if and only if it was run after the message was published.
var markScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[1], '1', 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local seq = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[1], seq .. ' +' .. ARGV[2])
return {seq, now, redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. now, '+inf', 'WITHSCORES')}
`)

// mark marks key for ttl and waits until every replica holding a lease
// has applied it to its mirror, or lost its lease.
func (w *watch) mark(ctx context.Context, key string, ttl time.Duration) error {
	w.start()
	res, err := markScript.Run(ctx, w.c, []string{w.prefix + key, w.marksKey, w.seq, w.leases},
		w.inv, key, ms(ttl)).Slice()
	if err != nil {
		return err
	}
	return w.await(ctx, res)
}

// mark is where a stamp read began: the session and the messages applied.
type mark struct{ gen, messages uint64 }

// session returns the mark at which a stamp read may be learned, and
// whether one may be at all: subscribed and the lease held.
func (w *watch) session() (mark, bool) {
	w.start()
	w.mu.RLock()
	defer w.mu.RUnlock()
	return mark{w.gen, w.messages}, w.subscribed && time.Now().Before(w.until)
}

// learn records stamp values read (by an MGET sent after session returned
// at) unless the session changed or a message was applied meanwhile (it
// may be newer than the read and name a stamp the mirror did not hold).
func (w *watch) learn(at mark, names []string, vals []any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gen != at.gen || w.messages != at.messages || !w.subscribed {
		return
	}
	if w.mirror.len()+len(names) > mirrorMax {
		w.newSession()
		return
	}
	for i, name := range names {
		var v uint64
		if s, ok := vals[i].(string); ok {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return
			}
			v = n
		}
		if old, ok := w.mirror.get(name); !ok || v > old {
			w.mirror.set(name, v)
		}
	}
}

// known returns the current values of stamps, encoded as Stamps does,
// from the mirror, when it can be trusted and knows them all.
func (w *watch) known(stamps []string) (string, bool) {
	w.mu.RLock()
	if !w.wanted {
		w.mu.RUnlock()
		w.want()
		return "", false
	}
	defer w.mu.RUnlock()
	if !w.subscribed || !time.Now().Before(w.until) {
		return "", false
	}
	var buf [64]byte
	b := buf[:0]
	for i, s := range stamps {
		v, ok := w.mirror.get(s)
		if !ok {
			return "", false
		}
		if i > 0 {
			b = append(b, '.')
		}
		b = strconv.AppendUint(b, v, 10)
	}
	return string(b), true
}

// knownAt reports whether the mirror can be trusted, knows stamps, and
// holds exactly the values at encodes (as Known encodes them): a near hit's
// check, without building the string (CACHE-5). It is true exactly when
// known(stamps) would return (at, true).
func (w *watch) knownAt(stamps []string, at string) bool {
	w.mu.RLock()
	if !w.wanted {
		w.mu.RUnlock()
		w.want()
		return false
	}
	defer w.mu.RUnlock()
	if !w.subscribed || !time.Now().Before(w.until) {
		return false
	}
	var buf [20]byte
	rest := at
	for i, s := range stamps {
		v, ok := w.mirror.get(s)
		if !ok {
			return false
		}
		if i > 0 {
			if rest == "" || rest[0] != '.' {
				return false
			}
			rest = rest[1:]
		}
		d := strconv.AppendUint(buf[:0], v, 10)
		if len(rest) < len(d) || rest[:len(d)] != string(d) {
			return false
		}
		rest = rest[len(d):]
	}
	return rest == ""
}

// want starts the watch and has it take a lease.
func (w *watch) want() {
	w.start()
	w.mu.Lock()
	w.wanted = true
	w.mu.Unlock()
	w.pong()
}

// bumpScript increments the stamps KEYS[1..n] (named ARGV[2..n+1]) and the
// sequence KEYS[n+1], publishes "seq name=value ..." on the channel
// ARGV[1], and returns {seq, Redis time in ms, the live leases with their
// expiries}: one atomic step, so a replica's stamp read (MGET) sees the
// increments if and only if it was run after the message was published.
var bumpScript = goredis.NewScript(`
local n = #KEYS - 2
local parts = {}
for i = 1, n do
  parts[i] = ARGV[i + 1] .. '=' .. redis.call('INCR', KEYS[i])
end
local seq = redis.call('INCR', KEYS[n + 1])
redis.call('PUBLISH', ARGV[1], seq .. ' ' .. table.concat(parts, ' '))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {seq, now, redis.call('ZRANGEBYSCORE', KEYS[n + 2], '(' .. now, '+inf', 'WITHSCORES')}
`)

var errBumpReply = errors.New("bump script returned an unexpected reply")

// lease is a replica's lease as a waiting Bump sees it.
type lease struct {
	id  string
	end time.Time // on this replica's clock, at the latest
}

// leaseEndScript returns the Redis time in ms and the expiries of the
// leases ARGV (false for none) in the sorted set KEYS[1].
var leaseEndScript = goredis.NewScript(`
local t = redis.call('TIME')
local out = {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
for i, id in ipairs(ARGV) do
  out[i + 1] = redis.call('ZSCORE', KEYS[1], id) or ''
end
return out
`)

// liveLeases returns those of ids whose leases are still live, with their
// ends.
func (w *watch) liveLeases(ctx context.Context, ids []string) ([]lease, error) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	res, err := leaseEndScript.Run(ctx, w.c, []string{w.leases}, args...).Slice()
	received := time.Now()
	if err != nil {
		return nil, err
	}
	if len(res) != len(ids)+1 {
		return nil, errBumpReply
	}
	now, ok := res[0].(int64)
	if !ok {
		return nil, errBumpReply
	}
	var live []lease
	for i, id := range ids {
		sc, _ := res[i+1].(string)
		if sc == "" {
			continue
		}
		exp, err := strconv.ParseFloat(sc, 64)
		if err != nil {
			return nil, errBumpReply
		}
		if int64(exp) > now {
			live = append(live, lease{id, received.Add(time.Duration(int64(exp)-now) * time.Millisecond)})
		}
	}
	return live, nil
}

// bump increments stamps, publishes them, and waits until every replica
// holding a lease has acknowledged them or lost its lease.
func (w *watch) bump(ctx context.Context, stamps []string) error {
	w.start()
	keys := make([]string, 0, len(stamps)+2)
	args := make([]any, 0, len(stamps)+1)
	args = append(args, w.inv)
	for _, s := range stamps {
		keys = append(keys, w.stamps+s)
		args = append(args, s)
	}
	keys = append(keys, w.seq, w.leases)
	res, err := bumpScript.Run(ctx, w.c, keys, args...).Slice()
	if err != nil {
		return err
	}
	return w.await(ctx, res)
}

// await waits, after a script that published the message of sequence seq
// and returned {seq, Redis time in ms, the live leases with their
// expiries}, until every replica listed has acknowledged seq or lost its
// lease.
func (w *watch) await(ctx context.Context, res []any) error {
	received := time.Now()
	if len(res) != 3 {
		return errBumpReply
	}
	seq, ok1 := res[0].(int64)
	now, ok2 := res[1].(int64)
	live, ok3 := res[2].([]any)
	if !ok1 || !ok2 || !ok3 || len(live)%2 != 0 {
		return errBumpReply
	}
	pending := make([]lease, 0, len(live)/2)
	for i := 0; i < len(live); i += 2 {
		id, ok := live[i].(string)
		sc, ok2 := live[i+1].(string)
		if !ok || !ok2 {
			return errBumpReply
		}
		exp, err := strconv.ParseFloat(sc, 64)
		if err != nil {
			return errBumpReply
		}
		pending = append(pending, lease{id, received.Add(time.Duration(int64(exp)-now) * time.Millisecond)})
	}
	polled := map[string]int64{} // acknowledgements read from the hash
	for {
		w.mu.RLock()
		wake, subscribed := w.ackWake, w.subscribed
		left := pending[:0]
		var next time.Time
		t := time.Now()
		var ended []string
		for _, l := range pending {
			if w.heardAcks[l.id] >= seq || polled[l.id] >= seq {
				continue
			}
			if !t.Before(l.end) {
				ended = append(ended, l.id)
				continue
			}
			left = append(left, l)
			if next.IsZero() || l.end.Before(next) {
				next = l.end
			}
		}
		w.mu.RUnlock()
		pending = left
		if len(ended) > 0 {
			// A lease seen ending may have been renewed since: the replica
			// renews after a pong, which may have come before this Bump's
			// message. Wait on for those still live.
			renewed, err := w.liveLeases(ctx, ended)
			if err != nil {
				return err
			}
			for _, l := range renewed {
				pending = append(pending, l)
				if next.IsZero() || l.end.Before(next) {
					next = l.end
				}
			}
		}
		if len(pending) == 0 {
			return nil
		}
		// Acknowledgements come as messages; the hash is read too, soon
		// when this replica's own subscription is down (it hears none).
		poll := t.Add(ackPoll)
		if !subscribed {
			poll = t.Add(ackPollUnsubscribed)
		}
		if poll.Before(next) {
			next = poll
		}
		timer := time.NewTimer(time.Until(next))
		select {
		case <-wake:
		case <-timer.C:
			if !time.Now().Before(poll) {
				ids := make([]string, len(pending))
				for i, l := range pending {
					ids[i] = l.id
				}
				vals, err := w.c.HMGet(ctx, w.acked, ids...).Result()
				if err == nil {
					for i, v := range vals {
						if sv, ok := v.(string); ok {
							if n, err := strconv.ParseInt(sv, 10, 64); err == nil {
								polled[ids[i]] = n
							}
						}
					}
				}
			}
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
		timer.Stop()
	}
}
