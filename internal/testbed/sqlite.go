package testbed

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// snapshotSQLite copies the SQLite database at path, kept in rollback-journal mode by another
// process, into a temporary file and returns its name; the caller removes it. It takes no lock,
// so the process that owns the database never finds it busy. A copy counts only when no write
// was under way: the rollback journal was absent before and after it, and the header's change
// counter, which every commit raises, read the same before and after. A commit that began and
// ended inside the copy changes the counter; one that overlaps either end leaves its journal in
// place. Until a copy counts, it tries again every 20 ms until ctx ends.
func snapshotSQLite(ctx context.Context, path string) (string, error) {
	for {
		data, err := settledCopy(path)
		if err != nil {
			return "", err
		}
		if data != nil {
			f, err := os.CreateTemp("", "sqlite-snapshot-*.db")
			if err != nil {
				return "", err
			}
			_, err = f.Write(data)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(f.Name())
				return "", err
			}
			return f.Name(), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("snapshot %s: a write was under way at every try: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// settledCopy reads the database at path once; it returns nil, nil when a write may have been
// under way during the read.
func settledCopy(path string) ([]byte, error) {
	before, err := changeCounter(path)
	if err != nil || writing(path) {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	after, err := changeCounter(path)
	if err != nil || writing(path) || after != before {
		return nil, err
	}
	return data, nil
}

// changeCounter reads the file change counter, bytes 24 to 27 of a SQLite database's header.
func changeCounter(path string) ([4]byte, error) {
	var counter [4]byte
	f, err := os.Open(path)
	if err != nil {
		return counter, err
	}
	defer f.Close()
	if _, err := f.ReadAt(counter[:], 24); err != nil {
		return counter, fmt.Errorf("read the header of %s: %w", path, err)
	}
	return counter, nil
}

// writing reports whether the database at path has a rollback journal, that is a write under
// way (or left by a crash, which the next writer rolls back).
func writing(path string) bool {
	_, err := os.Stat(path + "-journal")
	return !errors.Is(err, fs.ErrNotExist)
}
