package rmqnode

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Nodes of a cluster start at the same time with one home: each must come
// away with no error and the same cookie, and no temporary file is left.
func TestEnsureCookieConcurrent(t *testing.T) {
	for round := 0; round < 20; round++ {
		home := t.TempDir()
		const n = 8
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = ensureCookie(home)
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, caller %d: %v", round, i, err)
			}
		}
		entries, err := os.ReadDir(home)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != ".erlang.cookie" {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Fatalf("round %d: home holds %v, want only .erlang.cookie", round, names)
		}
		p := filepath.Join(home, ".erlang.cookie")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 40 {
			t.Fatalf("cookie %q: want 40 hex digits", b)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o400 {
			t.Fatalf("cookie mode %v, want 0400", st.Mode().Perm())
		}
	}
}

// A Start that fails leaves no private directory behind.
func TestFailedStartRemovesItsDirectory(t *testing.T) {
	if _, err := os.Stat(ServerPath); err != nil {
		t.Skipf("rabbitmq-server is not installed: %v", err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	home := filepath.Join(tmp, "home")
	if err := os.WriteFile(home, nil, 0o600); err != nil { // a file: no cookie can go in it
		t.Fatal(err)
	}
	n, err := Start(context.Background(), Config{Name: "gwfailedstart", Port: 5799, DistPort: 25799, Home: home})
	if err == nil {
		n.Remove(context.Background())
		t.Fatal("Start with a home that is a file: no error")
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "home" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}
