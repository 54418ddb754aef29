package testbed

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sqlite runs one sqlite3 command on db and returns its trimmed output.
func sqlite(t *testing.T, db string, sql string) string {
	t.Helper()
	out, err := exec.Command("sqlite3", "-bail", db, sql).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestSnapshotSQLiteNeverBusiesTheWriter: a writer with no busy timeout commits hundreds of
// transactions while snapshots are taken; it never finds the database locked, and every
// snapshot is a whole database holding a prefix of the rows.
func TestSnapshotSQLiteNeverBusiesTheWriter(t *testing.T) {
	db := filepath.Join(t.TempDir(), "live.db")
	sqlite(t, db, "CREATE TABLE rows (n INTEGER)")
	var script strings.Builder
	script.WriteString("PRAGMA synchronous = OFF;\n")
	const commits = 400
	for i := 1; i <= commits; i++ {
		script.WriteString("INSERT INTO rows VALUES (" + strconv.Itoa(i) + ");\n")
	}
	writer := exec.Command("sqlite3", "-bail", db)
	writer.Stdin = strings.NewReader(script.String())
	var writerOut strings.Builder
	writer.Stdout, writer.Stderr = &writerOut, &writerOut
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- writer.Wait() }()

	snapshots, last := 0, -1
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("the writer failed after %d snapshots: %v\n%s", snapshots, err, writerOut.String())
			}
			running = false
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		copy, err := snapshotSQLite(ctx, db)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if got := sqlite(t, copy, "PRAGMA integrity_check"); got != "ok" {
			t.Fatalf("snapshot %d: integrity check: %s", snapshots, got)
		}
		count, _ := strconv.Atoi(sqlite(t, copy, "SELECT count(*) FROM rows"))
		if max := sqlite(t, copy, "SELECT coalesce(max(n), 0) FROM rows"); max != strconv.Itoa(count) {
			t.Fatalf("snapshot %d: %d rows but the largest is %s: not a prefix of the commits", snapshots, count, max)
		}
		if count < last {
			t.Fatalf("snapshot %d: %d rows, fewer than the %d of the one before", snapshots, count, last)
		}
		last = count
		os.Remove(copy)
		snapshots++
	}
	if last != commits {
		t.Fatalf("the last snapshot holds %d rows, want %d", last, commits)
	}
	t.Logf("%d snapshots during %d commits", snapshots, commits)
}

// TestSnapshotSQLiteWaitsOutAJournal: while a rollback journal lies beside the database, no
// copy counts, and the snapshot gives up with the reason when its context ends.
func TestSnapshotSQLiteWaitsOutAJournal(t *testing.T) {
	db := filepath.Join(t.TempDir(), "live.db")
	sqlite(t, db, "CREATE TABLE rows (n INTEGER)")
	if err := os.WriteFile(db+"-journal", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := snapshotSQLite(ctx, db); err == nil || !strings.Contains(err.Error(), "a write was under way at every try") {
		t.Fatalf("snapshot beside a journal: got %v, want the write named", err)
	}
}
