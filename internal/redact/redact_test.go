package redact

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

const pw = "s3cretPW"

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"amqp://guest:guest@localhost:5672//":           "amqp://guest:**@localhost:5672//",
		"amqp://u:" + pw + "@h/v%2Fh":                   "amqp://u:**@h/v%2Fh",
		"redis://:" + pw + "@localhost:6379/0":          "redis://:**@localhost:6379/0",
		"redis://h:6379/0?password=" + pw:               "redis://h:6379/0?password=**",
		"redis://h/0?db=1&Password=" + pw + "&x=y#f":    "redis://h/0?db=1&Password=**&x=y#f",
		"rediss://u:" + pw + "@h:6380/0?password=" + pw: "rediss://u:**@h:6380/0?password=**",
		"redis://localhost:6379/0":                      "redis://localhost:6379/0",
		"redis://h:6379/0?x=a@b":                        "redis://h:6379/0?x=a@b",
		"amqp://u@h//":                                  "amqp://u@h//",
		"rpc://":                                        "rpc://",
		"":                                              "",
		// Unparsable: hidden up to the last '@'.
		"amqp://u:" + pw + "@host/%zz":  "amqp://u:**@host/%zz",
		"redis://:" + pw + "@[::1":      "redis://:**@[::1",
		"redis://[::1/0?password=" + pw: "redis://[::1/0?password=**",
		// A failover list.
		"amqp://a:" + pw + "@h1//;amqp://b:" + pw + "@h2//":    "amqp://a:**@h1//;amqp://b:**@h2//",
		"sentinel://:" + pw + "@h1:26379; sentinel://h2:26379": "sentinel://:**@h1:26379; sentinel://h2:26379",
		// A password with a ';' is not a list.
		"amqp://u:" + pw + ";" + pw + "@h//":                              "amqp://u:**@h//",
		"amqp://u:" + pw + ";x;" + pw + "@h1//;amqps://v:" + pw + "@h2//": "amqp://u:**@h1//;amqps://v:**@h2//",
		// A password with an unescaped '/' or '@'.
		"amqp://u:" + pw + "/x@h//": "amqp://u:**@h//",
		"amqp://u:" + pw + "@x@h//": "amqp://u:**@h//",
	} {
		got := URL(in)
		if got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, pw) {
			t.Errorf("URL(%q) = %q leaks the password", in, got)
		}
	}
}

// The errors the URL parsers of net/url, amqp091-go and go-redis return
// quote the URL; Error removes the secret from every one of them.
func TestErrorOfParsers(t *testing.T) {
	for _, raw := range []string{
		"amqp://u:" + pw + "@host/%zz",
		"redis://:" + pw + "@[::1",
		"redis://:" + pw + "@h:6379/x",
		"redis://h:6379/0?password=" + pw + "&db=zz",
		"redis://u:" + pw + "%zz@h/0",
		"redis://u:s3cret\"PW@h/%zz",
	} {
		var errs []error
		_, err := url.Parse(raw)
		errs = append(errs, err)
		_, err = redis.ParseURL(raw)
		errs = append(errs, err)
		for _, err := range errs {
			if err == nil {
				continue
			}
			red := Error(fmt.Errorf("wrapped: %w", err), raw)
			for _, sec := range append(Secrets(raw), pw) {
				if strings.Contains(red.Error(), sec) {
					t.Errorf("%q: %q leaks %q", raw, red, sec)
				}
			}
			if !strings.HasPrefix(red.Error(), "wrapped: ") {
				t.Errorf("%q: lost the message: %q", raw, red)
			}
		}
	}
	if Error(nil, "x") != nil {
		t.Error("Error(nil) != nil")
	}
	plain := errors.New("no secret here")
	if Error(plain, "amqp://u:"+pw+"@h//") != plain {
		t.Error("an error without a secret was replaced")
	}
}

func TestSecrets(t *testing.T) {
	got := Secrets("redis://u:a%40b@h/0?password=x%2By&db=1")
	want := map[string]bool{"a%40b": true, "a@b": true, "x%2By": true, "x+y": true}
	for _, s := range got {
		if !want[s] {
			t.Errorf("unexpected secret %q in %q", s, got)
		}
		delete(want, s)
	}
	if len(want) != 0 {
		t.Errorf("missing %v in %q", want, got)
	}
}

func ExampleURL() {
	fmt.Println(URL("amqp://guest:guest@localhost:5672//"))
	fmt.Println(URL("redis://:secret@localhost:6379/0?password=secret"))
	// Output:
	// amqp://guest:**@localhost:5672//
	// redis://:**@localhost:6379/0?password=**
}

func ExampleError() {
	raw := "amqp://guest:secret@localhost/%zz"
	_, err := url.Parse(raw)
	fmt.Println(Error(err, raw))
	// Output:
	// parse "amqp://guest:**@localhost/%zz": invalid URL escape "%zz"
}
