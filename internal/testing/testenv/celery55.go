package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Celery55Env is the variable naming the directory that holds Celery 5.5.3
// and kombu 5.5.4 (with billiard, vine and amqp), as released, to be put on
// PYTHONPATH in front of the system's Celery 5.2.6.
const Celery55Env = "CELERY55_SITE"

var celery55 struct {
	once sync.Once
	dir  string
	err  string
}

// Celery55Site returns the directory of Celery 5.5.3: $CELERY55_SITE, else
// the first shared/celery55/site found in the working directory or one of
// its parents (beside the repository). The test fails, and never skips,
// when there is none or when Python cannot import Celery 5.5.3 from it
// (its other requirements come from Debian's python3-click,
// python3-click-didyoumean, python3-click-repl, python3-click-plugins,
// python3-dateutil, python3-packaging and python3-tz, which .ci/run
// installs).
func Celery55Site(t testing.TB) string {
	t.Helper()
	celery55.once.Do(func() {
		dir := os.Getenv(Celery55Env)
		if dir == "" {
			dir = findUp(filepath.Join("shared", "celery55", "site"))
		}
		if dir == "" {
			celery55.err = "Celery 5.5.3 is required: set " + Celery55Env + " to the directory holding celery and kombu 5.5"
			return
		}
		cmd := exec.Command(Python(), "-c", "import celery, kombu, dateutil, click; print(celery.__version__)")
		cmd.Env = append(os.Environ(), "PYTHONPATH="+dir)
		out, err := cmd.CombinedOutput()
		if v := strings.TrimSpace(string(out)); err != nil || !strings.HasPrefix(v, "5.5.") {
			celery55.err = "Celery 5.5 from " + dir + " does not import (" + v + "); run .ci/run, which installs its requirements"
			return
		}
		celery55.dir = dir
	})
	if celery55.err != "" {
		t.Fatal(celery55.err)
	}
	return celery55.dir
}

// Celery55Environ returns env with PYTHONPATH set to Celery55Site, for a
// Python process that runs Celery 5.5.3.
func Celery55Environ(t testing.TB, env []string) []string {
	t.Helper()
	dir := Celery55Site(t)
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PYTHONPATH=") {
			out = append(out, kv)
		}
	}
	return append(out, "PYTHONPATH="+dir)
}

// findUp returns the first directory rel below the working directory or
// one of its ancestors, or "".
func findUp(rel string) string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		p := filepath.Join(dir, rel)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
