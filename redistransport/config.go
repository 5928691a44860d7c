package redistransport

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gworker/gworker/internal/redact"
)

// DefaultURL is Celery's Redis broker URL when only the scheme is given.
const DefaultURL = "redis://localhost:6379/0"

// Defaults of Config. The names in parentheses are kombu's transport
// options; the values are kombu 5.2.4's.
const (
	// DefaultVisibilityTimeout (visibility_timeout): an unacknowledged
	// message older than this is restored to its queue by any consumer.
	DefaultVisibilityTimeout = time.Hour
	// DefaultQueueOrderStrategy (queue_order_strategy): every consumed
	// queue gets an equal chance.
	DefaultQueueOrderStrategy = RoundRobin
	// DefaultSep (sep) separates a queue name from its priority step and
	// the fields of a binding.
	DefaultSep = "\x06\x16"
	// DefaultUnackedKey, DefaultUnackedIndexKey and DefaultUnackedMutexKey
	// (unacked_key, unacked_index_key, unacked_mutex_key) name the hash of
	// unacknowledged messages, the sorted set of their delivery times and
	// the lock held while restoring.
	DefaultUnackedKey      = "unacked"
	DefaultUnackedIndexKey = "unacked_index"
	DefaultUnackedMutexKey = "unacked_mutex"
	// DefaultUnackedMutexExpire (unacked_mutex_expire) is how long the
	// restore lock lives if its holder dies.
	DefaultUnackedMutexExpire = 5 * time.Minute
	// DefaultMaxConnections (max_connections) bounds the connection pool.
	DefaultMaxConnections = 10
	// DefaultSentinelPort is the port of a sentinel:// address without one.
	DefaultSentinelPort = 26379

	// DefaultRestoreInterval is how often a consumer looks for messages of
	// dead consumers to restore (kombu: every tenth poll of its loop).
	DefaultRestoreInterval = 10 * time.Second
	// DefaultPollTimeout is the BRPOP timeout of an idle consumer (kombu: 1 s).
	DefaultPollTimeout = time.Second
	// DefaultBatch bounds how many messages one fetch takes when the
	// prefetch leaves room for more.
	DefaultBatch = 32
	// DefaultDeadLetterKey is the list bad envelopes are moved to.
	DefaultDeadLetterKey = "gworker.unparsable"
	// DefaultReconnectMin and DefaultReconnectMax bound the wait between
	// attempts after a connection error.
	DefaultReconnectMin = 100 * time.Millisecond
	DefaultReconnectMax = 5 * time.Second
	// DefaultSettleTimeout bounds how long Ack and Reject retry through a
	// connection loss.
	DefaultSettleTimeout = 30 * time.Second
)

// DefaultPrioritySteps (priority_steps) are Celery's: priorities 0-2 go to
// the queue's own list, 3-5, 6-8 and 9 to lists with the step appended.
var DefaultPrioritySteps = []int{0, 3, 6, 9}

// QueueOrder is a queue_order_strategy: the order in which a consumer
// takes messages from its queues.
type QueueOrder string

// kombu's strategies.
const (
	// RoundRobin moves the queue a message came from to the end of the
	// order, so no queue starves.
	RoundRobin QueueOrder = "round_robin"
	// Sorted consumes queues in alphabetical order.
	Sorted QueueOrder = "sorted"
	// Priority consumes queues in the order given.
	Priority QueueOrder = "priority"
)

// Config configures a Broker. The zero value connects to DefaultURL with
// kombu's defaults.
//
// A typed field left at its zero value takes the value of the kombu
// transport option of the same name in TransportOptions (what Celery's
// broker_transport_options or the --broker-transport-option flag give),
// and otherwise its default.
type Config struct {
	// URL is the broker URL: redis://[user:password@]host[:port][/db],
	// rediss://... for TLS (query parameter ssl_cert_reqs=none|optional|
	// required, ssl_ca_certs=path), or
	// sentinel://[:password@]host:port[/db];sentinel://host2:port;... for
	// a master found through Redis Sentinel (MasterName is then required).
	URL string

	// Logger receives connection events and bad messages; nil means
	// zap.NewNop().
	Logger *zap.Logger

	// TransportOptions are kombu transport options by name, values as
	// text: visibility_timeout (seconds), queue_order_strategy,
	// priority_steps ("0,3,6,9" or "[0, 3, 6, 9]"), sep, global_keyprefix,
	// socket_timeout, socket_connect_timeout (seconds), unacked_key,
	// unacked_index_key, unacked_mutex_key, unacked_mutex_expire
	// (seconds), unacked_restore_limit, max_connections, master_name.
	// Other kombu options are accepted and ignored with a log line.
	TransportOptions map[string]string

	VisibilityTimeout    time.Duration
	QueueOrderStrategy   QueueOrder
	PrioritySteps        []int
	Sep                  string
	GlobalKeyPrefix      string
	SocketTimeout        time.Duration
	SocketConnectTimeout time.Duration
	UnackedKey           string
	UnackedIndexKey      string
	UnackedMutexKey      string
	UnackedMutexExpire   time.Duration
	// UnackedRestoreLimit caps how many messages one restore pass takes
	// back; 0 means no cap.
	UnackedRestoreLimit int
	MaxConnections      int
	// MasterName is the Sentinel master name (transport option
	// master_name); required with sentinel:// URLs.
	MasterName string

	// RestoreInterval, PollTimeout, Batch, DeadLetterKey, ReconnectMin,
	// ReconnectMax and SettleTimeout: see their defaults.
	RestoreInterval            time.Duration
	PollTimeout                time.Duration
	Batch                      int
	DeadLetterKey              string
	ReconnectMin, ReconnectMax time.Duration
	SettleTimeout              time.Duration
}

// ignoredOptions are kombu/Celery transport options that mean nothing to
// this transport.
var ignoredOptions = []string{
	"fanout_prefix", "fanout_patterns", "health_check_interval", "retry_on_timeout",
	"socket_keepalive", "socket_keepalive_options", "max_retries", "interval_start",
	"interval_step", "interval_max", "body_encoding", "sentinel_kwargs", "min_other_sentinels",
	"ack_emulation", "deadletter_queue", "polling_interval", "result_chord_ordered",
}

// applyOptions fills zero typed fields from TransportOptions.
func (c *Config) applyOptions() error {
	for k, v := range c.TransportOptions {
		var err error
		switch k {
		case "visibility_timeout":
			err = setDuration(&c.VisibilityTimeout, v)
		case "queue_order_strategy":
			if c.QueueOrderStrategy == "" {
				c.QueueOrderStrategy = QueueOrder(v)
			}
		case "priority_steps":
			if c.PrioritySteps == nil {
				c.PrioritySteps, err = parseSteps(v)
			}
		case "sep":
			setString(&c.Sep, v)
		case "global_keyprefix":
			setString(&c.GlobalKeyPrefix, v)
		case "socket_timeout":
			err = setDuration(&c.SocketTimeout, v)
		case "socket_connect_timeout":
			err = setDuration(&c.SocketConnectTimeout, v)
		case "unacked_key":
			setString(&c.UnackedKey, v)
		case "unacked_index_key":
			setString(&c.UnackedIndexKey, v)
		case "unacked_mutex_key":
			setString(&c.UnackedMutexKey, v)
		case "unacked_mutex_expire":
			err = setDuration(&c.UnackedMutexExpire, v)
		case "unacked_restore_limit":
			err = setInt(&c.UnackedRestoreLimit, v)
		case "max_connections":
			err = setInt(&c.MaxConnections, v)
		case "master_name":
			setString(&c.MasterName, v)
		default:
			if !slices.Contains(ignoredOptions, k) {
				c.Logger.Warn("unknown Redis transport option ignored", zap.String("option", k))
			}
		}
		if err != nil {
			return fmt.Errorf("%w: transport option %s=%q: %v", ErrInvalidConfig, k, v, err)
		}
	}
	return nil
}

func setString(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

func setInt(dst *int, v string) error {
	if *dst != 0 {
		return nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return err
	}
	*dst = n
	return nil
}

// setDuration reads seconds as kombu does (an int or a float).
func setDuration(dst *time.Duration, v string) error {
	if *dst != 0 {
		return nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		return err
	}
	if f <= 0 {
		return fmt.Errorf("must be positive")
	}
	*dst = time.Duration(f * float64(time.Second))
	return nil
}

func parseSteps(v string) ([]int, error) {
	v = strings.Trim(strings.TrimSpace(v), "[]()")
	var steps []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		steps = append(steps, n)
	}
	return steps, nil
}

// withDefaults applies TransportOptions and defaults and validates.
func (c Config) withDefaults() (Config, error) {
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if err := c.applyOptions(); err != nil {
		return c, err
	}
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = DefaultVisibilityTimeout
	}
	if c.QueueOrderStrategy == "" {
		c.QueueOrderStrategy = DefaultQueueOrderStrategy
	}
	switch c.QueueOrderStrategy {
	case RoundRobin, Sorted, Priority:
	default:
		return c, fmt.Errorf("%w: queue_order_strategy %q (want round_robin, sorted or priority)", ErrInvalidConfig, c.QueueOrderStrategy)
	}
	if c.PrioritySteps == nil {
		c.PrioritySteps = DefaultPrioritySteps
	}
	if len(c.PrioritySteps) == 0 || !slices.IsSorted(c.PrioritySteps) {
		return c, fmt.Errorf("%w: priority_steps %v must be a non-empty ascending list", ErrInvalidConfig, c.PrioritySteps)
	}
	c.PrioritySteps = slices.Clone(c.PrioritySteps)
	if c.Sep == "" {
		c.Sep = DefaultSep
	}
	if c.UnackedKey == "" {
		c.UnackedKey = DefaultUnackedKey
	}
	if c.UnackedIndexKey == "" {
		c.UnackedIndexKey = DefaultUnackedIndexKey
	}
	if c.UnackedMutexKey == "" {
		c.UnackedMutexKey = DefaultUnackedMutexKey
	}
	if c.UnackedMutexExpire == 0 {
		c.UnackedMutexExpire = DefaultUnackedMutexExpire
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.RestoreInterval == 0 {
		c.RestoreInterval = DefaultRestoreInterval
	}
	if c.PollTimeout == 0 {
		c.PollTimeout = DefaultPollTimeout
	}
	if c.PollTimeout < time.Millisecond {
		return c, fmt.Errorf("%w: poll timeout %v below 1ms", ErrInvalidConfig, c.PollTimeout)
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.DeadLetterKey == "" {
		c.DeadLetterKey = DefaultDeadLetterKey
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax <= 0 {
		c.ReconnectMax = DefaultReconnectMax
	}
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = c.ReconnectMin
	}
	if c.SettleTimeout <= 0 {
		c.SettleTimeout = DefaultSettleTimeout
	}
	if c.VisibilityTimeout < 0 || c.UnackedMutexExpire < 0 || c.UnackedRestoreLimit < 0 ||
		c.MaxConnections < 0 || c.Batch < 0 || c.RestoreInterval < 0 || c.SocketTimeout < 0 {
		return c, fmt.Errorf("%w: negative setting", ErrInvalidConfig)
	}
	return c, nil
}

// newClient builds the go-redis client for the URL.
func (c Config) newClient() (redis.UniversalClient, int, error) {
	raw := strings.TrimSpace(c.URL)
	if strings.HasPrefix(raw, "sentinel://") {
		return c.newSentinelClient(raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: broker URL %s: %v", ErrInvalidConfig, RedactURL(raw), redact.Error(err, raw))
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, 0, fmt.Errorf("%w: broker URL scheme %q (want redis, rediss or sentinel)", ErrInvalidConfig, u.Scheme)
	}
	q := u.Query()
	reqs, ca := q.Get("ssl_cert_reqs"), q.Get("ssl_ca_certs")
	q.Del("ssl_cert_reqs")
	q.Del("ssl_ca_certs")
	u.RawQuery = q.Encode()
	if u.Path == "/" {
		u.Path = ""
	}
	opts, err := redis.ParseURL(u.String())
	if err != nil {
		return nil, 0, fmt.Errorf("%w: broker URL %s: %v", ErrInvalidConfig, RedactURL(raw), redact.Error(redact.Error(err, u.String()), raw))
	}
	if opts.TLSConfig != nil {
		if err := tlsFromQuery(opts.TLSConfig, reqs, ca); err != nil {
			return nil, 0, err
		}
	}
	c.tune(opts)
	return redis.NewClient(opts), opts.DB, nil
}

func tlsFromQuery(t *tls.Config, reqs, ca string) error {
	switch strings.ToLower(strings.TrimPrefix(strings.ToLower(reqs), "cert_")) {
	case "", "required":
	case "none", "optional":
		t.InsecureSkipVerify = true
	default:
		return fmt.Errorf("%w: ssl_cert_reqs=%q", ErrInvalidConfig, reqs)
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return fmt.Errorf("%w: ssl_ca_certs: %v", ErrInvalidConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%w: ssl_ca_certs %s holds no certificate", ErrInvalidConfig, ca)
		}
		t.RootCAs = pool
	}
	return nil
}

// tune applies the socket and pool settings.
func (c Config) tune(o *redis.Options) {
	o.PoolSize = c.MaxConnections
	if c.SocketTimeout > 0 {
		o.ReadTimeout, o.WriteTimeout = c.SocketTimeout, c.SocketTimeout
	}
	if c.SocketConnectTimeout > 0 {
		o.DialTimeout = c.SocketConnectTimeout
	}
	// Blocking reads (BRPOP) get their own deadline from go-redis.
	o.ContextTimeoutEnabled = false
	o.MaxRetries = -1 // the transport retries with its own backoff
}

// newSentinelClient parses kombu's sentinel URL: the sentinels are every
// ";"-separated part's host; password and database come from the first.
func (c Config) newSentinelClient(raw string) (redis.UniversalClient, int, error) {
	if c.MasterName == "" {
		return nil, 0, fmt.Errorf("%w: sentinel:// needs the master_name transport option", ErrInvalidConfig)
	}
	fo := &redis.FailoverOptions{MasterName: c.MasterName}
	for i, part := range strings.Split(raw, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := url.Parse(part)
		if err != nil || u.Scheme != "sentinel" {
			return nil, 0, fmt.Errorf("%w: sentinel URL part %q", ErrInvalidConfig, RedactURL(part))
		}
		host, port := u.Hostname(), u.Port()
		if host == "" {
			host = "localhost"
		}
		if port == "" {
			port = strconv.Itoa(DefaultSentinelPort)
		}
		fo.SentinelAddrs = append(fo.SentinelAddrs, host+":"+port)
		if i == 0 {
			if u.User != nil {
				fo.Username = u.User.Username()
				fo.Password, _ = u.User.Password()
			}
			if db := strings.Trim(u.Path, "/"); db != "" {
				n, err := strconv.Atoi(db)
				if err != nil {
					return nil, 0, fmt.Errorf("%w: database %q in %s", ErrInvalidConfig, db, RedactURL(part))
				}
				fo.DB = n
			}
		}
	}
	if len(fo.SentinelAddrs) == 0 {
		return nil, 0, fmt.Errorf("%w: sentinel URL without an address", ErrInvalidConfig)
	}
	fo.PoolSize = c.MaxConnections
	if c.SocketTimeout > 0 {
		fo.ReadTimeout, fo.WriteTimeout = c.SocketTimeout, c.SocketTimeout
	}
	if c.SocketConnectTimeout > 0 {
		fo.DialTimeout = c.SocketConnectTimeout
	}
	fo.MaxRetries = -1
	return redis.NewFailoverClient(fo), fo.DB, nil
}

// RedactURL returns the URL with its passwords replaced by "**", as Celery
// prints broker URLs; every ";"-separated part is redacted.
func RedactURL(raw string) string { return redact.URL(raw) }
