package main

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/gworker/gworker/worker"
)

func TestExpandHostname(t *testing.T) {
	host, _ := os.Hostname()
	short, _, _ := strings.Cut(host, ".")
	if got := expandHostname("go@%h"); got != "go@"+host {
		t.Errorf("%%h: %q", got)
	}
	if got := expandHostname("w1@%n"); got != "w1@"+short {
		t.Errorf("%%n: %q", got)
	}
}

func TestRedactAny(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:secret@localhost:6379/0":     "redis://:**@localhost:6379/0",
		"amqp://user:s3cr3t@rabbit:5672/vhost": "amqp://user:**@rabbit:5672/vhost",
		"redis://localhost:6379/0":             "redis://localhost:6379/0",
	} {
		if got := redactAny(in); got != want || strings.Contains(got, "secret") {
			t.Errorf("%s: %s", in, got)
		}
	}
}

func TestAcceptTypes(t *testing.T) {
	got, err := acceptTypes("json, msgpack")
	if err != nil || len(got) != 2 || got[1] != "application/x-msgpack" {
		t.Errorf("%v %v", got, err)
	}
	for _, bad := range []string{"pickle", "yaml"} {
		if _, err := acceptTypes(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestSplitCommandArgs(t *testing.T) {
	for _, args := range [][]string{{"tasks.add", "--wait"}, {"--wait", "tasks.add"}} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		wait := fs.Bool("wait", false, "")
		name, err := splitCommandArgs(fs, args)
		if err != nil || name != "tasks.add" || !*wait {
			t.Errorf("%v: %q %v %v", args, name, *wait, err)
		}
	}
}

func TestWorkerFlagsAndUsage(t *testing.T) {
	t.Setenv("CELERY_BROKER_URL", "amqp://a:b@h:5672//")
	f, err := parseWorkerFlags([]string{"-Q", "a,b", "-c", "3", "--acks-late", "-n", "go@%h"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if f.broker != "amqp://a:b@h:5672//" || f.queues != "a,b" || f.concurrency != 3 || !f.acksLate {
		t.Errorf("flags: %+v", f)
	}
	if q := splitList(f.queues); len(q) != 2 || q[1] != "b" {
		t.Errorf("queues: %v", q)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"nonsense"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "unknown command") {
		t.Errorf("unknown command: %d %q", code, errOut.String())
	}
	if code := run([]string{"call"}, &out, &errOut); code != 2 {
		t.Errorf("call without a name: %d", code)
	}
}

// Defaults read from CELERY_BROKER_URL and CELERY_RESULT_BACKEND are
// printed by -h: without their passwords. The banner hides them too,
// including a Redis ?password= parameter.
func TestHelpAndBannerHidePasswords(t *testing.T) {
	const pw = "s3cretPW"
	t.Setenv("CELERY_BROKER_URL", "amqp://u:"+pw+"@h:5672//")
	t.Setenv("CELERY_RESULT_BACKEND", "redis://:"+pw+"@h:6379/0?password="+pw)
	for _, cmd := range [][]string{{"worker", "-h"}, {"call", "x", "-h"}, {"result", "-h"}} {
		var out, errOut bytes.Buffer
		run(cmd, &out, &errOut)
		all := out.String() + errOut.String()
		if !strings.Contains(all, "h:5672") {
			t.Errorf("%v: no broker default in %q", cmd, all)
		}
		if strings.Contains(all, pw) {
			t.Errorf("%v: the usage text leaks the password:\n%s", cmd, all)
		}
	}
	f, err := parseWorkerFlags(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var banner bytes.Buffer
	printBanner(&banner, worker.Config{Hostname: "h"}, f, worker.NewRegistry())
	if strings.Contains(banner.String(), pw) || !strings.Contains(banner.String(), "h:6379") {
		t.Errorf("banner:\n%s", banner.String())
	}
	for _, raw := range []string{"redis://:" + pw + "@[::1", "amqp://u:" + pw + "@host/%zz"} {
		if got := redactAny(raw); strings.Contains(got, pw) {
			t.Errorf("redactAny(%q) = %q", raw, got)
		}
	}
}
