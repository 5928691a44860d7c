package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/gworker/gworker"
)

// docs parses every YAML document of a file.
func docs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, d)
	}
}

// at walks a parsed document: keys of maps, indexes of lists.
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("no key %q in %v", k, v)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("no index %d in %v", k, v)
			}
			v = l[k]
		}
	}
	return v
}

// workerFlags returns the long flags `gworker worker --help` lists.
func workerFlags(t *testing.T) map[string]bool {
	t.Helper()
	var out, errb bytes.Buffer
	app := gworker.New(gworker.Config{})
	if code := app.RunCLI(context.Background(), []string{"worker", "--help"}, &out, &errb); code != 0 {
		t.Fatalf("worker --help: exit %d: %s", code, errb.String())
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`--([a-z][a-z0-9-]*)`).FindAllStringSubmatch(out.String(), -1) {
		flags[m[1]] = true
	}
	return flags
}

// flagValues checks that every --flag of args is one the worker has and
// returns their values.
func flagValues(t *testing.T, args []string) map[string]string {
	t.Helper()
	known := workerFlags(t)
	vals := map[string]string{}
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, val, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !known[name] {
			t.Errorf("flag --%s is not a worker flag", name)
		}
		vals[name] = val
	}
	return vals
}

func seconds(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("%q is not a number of seconds", s)
	}
	return f
}

func TestKubernetesDeployment(t *testing.T) {
	d := docs(t, "kubernetes/deployment.yaml")
	if len(d) != 1 || d[0]["kind"] != "Deployment" {
		t.Fatalf("want one Deployment, got %v", d)
	}
	spec := at(t, d[0], "spec", "template", "spec")
	c := at(t, spec, "containers", 0)
	var args []string
	for _, a := range at(t, c, "args").([]any) {
		args = append(args, a.(string))
	}
	if args[0] != "worker" {
		t.Errorf("args start with %q, want the worker command", args[0])
	}
	vals := flagValues(t, args[1:])
	soft := seconds(t, vals["soft-shutdown-timeout"])
	grace := float64(at(t, spec, "terminationGracePeriodSeconds").(int))
	if grace <= soft {
		t.Errorf("terminationGracePeriodSeconds %v must be above --soft-shutdown-timeout %v", grace, soft)
	}
	_, port, _ := strings.Cut(vals["metrics-addr"], ":")
	if port != strconv.Itoa(at(t, c, "ports", 0, "containerPort").(int)) {
		t.Errorf("--metrics-addr %s does not serve the container port", vals["metrics-addr"])
	}
	remap := false
	for _, e := range at(t, c, "env").([]any) {
		remap = remap || (at(t, e, "name") == "REMAP_SIGTERM" && at(t, e, "value") == "SIGQUIT")
	}
	if !remap {
		t.Error("no REMAP_SIGTERM=SIGQUIT: Kubernetes' single SIGTERM would start a warm shutdown that SIGKILL cuts")
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got := at(t, c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s on %v, want %s", probe, got, path)
		}
		if got := at(t, c, probe, "httpGet", "port"); got != at(t, c, "ports", 0, "name") {
			t.Errorf("%s on port %v", probe, got)
		}
	}
	for _, r := range []string{"cpu", "memory"} {
		if at(t, c, "resources", "requests", r) == nil {
			t.Errorf("no %s request", r)
		}
	}
	if at(t, spec, "securityContext", "runAsNonRoot") != true {
		t.Error("the pod may run as root")
	}
}

func TestKEDAScaledObjects(t *testing.T) {
	for file, trigger := range map[string]string{"keda/scaledobject-rabbitmq.yaml": "rabbitmq", "keda/scaledobject-redis.yaml": "redis"} {
		var so map[string]any
		auths := map[string]bool{}
		for _, d := range docs(t, file) {
			switch d["kind"] {
			case "ScaledObject":
				so = d
			case "TriggerAuthentication":
				auths[at(t, d, "metadata", "name").(string)] = true
			}
		}
		if so == nil {
			t.Fatalf("%s: no ScaledObject", file)
		}
		if at(t, so, "spec", "scaleTargetRef", "name") != "gworker" {
			t.Errorf("%s scales %v, not the gworker Deployment", file, at(t, so, "spec", "scaleTargetRef", "name"))
		}
		tr := at(t, so, "spec", "triggers", 0)
		if at(t, tr, "type") != trigger {
			t.Errorf("%s: trigger %v", file, at(t, tr, "type"))
		}
		queue := at(t, tr, "metadata", "queueName")
		if trigger == "redis" {
			queue = at(t, tr, "metadata", "listName")
		}
		if queue != "gojobs" {
			t.Errorf("%s watches %v, not the queue the Deployment consumes", file, queue)
		}
		if !auths[at(t, tr, "authenticationRef", "name").(string)] {
			t.Errorf("%s: authenticationRef names no TriggerAuthentication of the file", file)
		}
	}
}

func TestSystemdUnit(t *testing.T) {
	f, err := os.Open("systemd/gworker.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	if keys["KillSignal"] != "SIGTERM" {
		t.Errorf("KillSignal %q: SIGTERM is the warm shutdown", keys["KillSignal"])
	}
	fields := strings.Fields(keys["ExecStart"])
	if len(fields) < 2 || fields[1] != "worker" {
		t.Fatalf("ExecStart %q", keys["ExecStart"])
	}
	vals := flagValues(t, fields[2:])
	if seconds(t, keys["TimeoutStopSec"]) <= seconds(t, vals["soft-shutdown-timeout"]) {
		t.Errorf("TimeoutStopSec %s must be above --soft-shutdown-timeout %s", keys["TimeoutStopSec"], vals["soft-shutdown-timeout"])
	}
}

// The image cannot be built here (no container engine), so the test runs
// the Dockerfile's own build step and checks what it makes: a static
// binary that runs; and the final stage runs it as a non-root user with no
// shell.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var build string
	var stages []string
	user, entry := "", ""
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "FROM "):
			stages = append(stages, line)
		case strings.HasPrefix(line, "RUN ") && strings.Contains(line, "go build"):
			build = strings.TrimPrefix(line, "RUN ")
		case strings.HasPrefix(line, "USER "):
			user = strings.TrimPrefix(line, "USER ")
		case strings.HasPrefix(line, "ENTRYPOINT "):
			entry = strings.TrimPrefix(line, "ENTRYPOINT ")
		}
	}
	if len(stages) != 2 || !strings.Contains(stages[1], "distroless/static") {
		t.Errorf("stages %q: want a build stage and a distroless static one (no shell)", stages)
	}
	if user == "" || strings.HasPrefix(user, "root") || strings.HasPrefix(user, "0") {
		t.Errorf("USER %q: the worker must not run as root", user)
	}
	if !strings.HasPrefix(entry, "[") {
		t.Errorf("ENTRYPOINT %s: the exec form is needed without a shell, and for signals to reach the worker", entry)
	}
	if !strings.HasPrefix(build, "CGO_ENABLED=0 ") {
		t.Fatalf("build step %q: want CGO_ENABLED=0", build)
	}
	// The RUN line is shell form: run it as the image's shell would, with
	// the output moved out of the image's path.
	out := filepath.Join(t.TempDir(), "gworker")
	m := regexp.MustCompile(`-o (\S+)`).FindStringSubmatch(build)
	if m == nil {
		t.Fatalf("build step %q names no output", build)
	}
	cmd := exec.Command("sh", "-c", strings.Replace(build, m[0], "-o "+out, 1))
	cmd.Dir = ".."
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, msg)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary is dynamically linked: it needs a libc the image does not have")
		}
	}
	if v, err := exec.Command(out, "--version").CombinedOutput(); err != nil || len(v) == 0 {
		t.Errorf("--version: %v %s", err, v)
	}
}
