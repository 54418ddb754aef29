package testbed

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// headplaneCommit is the Headplane commit the suite runs: main at 0.7.0-beta.4, the first with
// server.proxy_auth. ../shared/headplane is a build of it; headplane-build.sh, beside this
// file, makes one.
const headplaneCommit = "990e1e9ff54d5d6975336c5df358007019a04ab6"

// errNoHeadplane is what a run without a Headplane build is told to do.
const errNoHeadplane = "set HEADPLANE_DIR, or run `make headplane` on a machine with Git access"

// headplaneDir returns a directory holding a Headplane build (build/server/index.js, drizzle/
// and the runtime node_modules): $HEADPLANE_DIR when set; else root/../shared/headplane when
// it holds one; else root/BinDir/headplane-COMMIT, built with headplane-build.sh when
// missing (which needs Git access to GitHub, pnpm from npm, and several minutes).
func headplaneDir(ctx context.Context, root string, logf func(string, ...any)) (string, error) {
	if dir := os.Getenv("HEADPLANE_DIR"); dir != "" {
		if !isHeadplaneBuild(dir) {
			return "", fmt.Errorf("HEADPLANE_DIR=%s holds no Headplane build (no build/server/index.js)", dir)
		}
		return dir, nil
	}
	if dir := filepath.Join(root, "..", "shared", "headplane"); isHeadplaneBuild(dir) {
		return dir, nil
	}
	dir := filepath.Join(root, BinDir, "headplane-"+headplaneCommit)
	if isHeadplaneBuild(dir) {
		return dir, nil
	}
	if err := buildHeadplane(ctx, root, dir, logf); err != nil {
		return "", err
	}
	return dir, nil
}

func isHeadplaneBuild(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "build", "server", "index.js"))
	return err == nil
}

// buildHeadplane runs headplane-build.sh into a temporary directory beside dir and renames
// it to dir, so that an interrupted build is never taken as done.
func buildHeadplane(ctx context.Context, root, dir string, logf func(string, ...any)) error {
	logf("building Headplane %s (clone, pnpm install, build: several minutes)", headplaneCommit[:12])
	start := time.Now()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("build headplane: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp")
	if err != nil {
		return fmt.Errorf("build headplane: %w", err)
	}
	defer os.RemoveAll(tmp)
	logPath := tmp + ".log"
	defer os.Remove(logPath)
	script := filepath.Join(root, "internal", "testbed", "headplane-build.sh")
	if err := runLogged(ctx, root, logPath, script, tmp); err != nil {
		return fmt.Errorf("no Headplane build found, and building one failed (%w): %s\n--- last lines of the build ---\n%s\n---",
			err, errNoHeadplane, tailFile(logPath, 20))
	}
	if err := os.Rename(tmp, dir); err != nil {
		if isHeadplaneBuild(dir) { // another test binary finished first
			return nil
		}
		return fmt.Errorf("build headplane: %w", err)
	}
	logf("built Headplane in %s", time.Since(start).Round(time.Second))
	return nil
}

// runLogged runs a long command with its standard output and error in logPath.
func runLogged(ctx context.Context, dir, logPath, bin string, args ...string) error {
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	return cmd.Run()
}

// headplaneSetup finds (or installs and builds) Node and Headplane once per stack, so that
// parallel tests starting Headplanes wait for one install instead of each running their own.
type headplaneSetup struct {
	once      sync.Once
	node, dir string
	err       error
}

// get returns the Node binary and the Headplane directory; a failure is reported to every
// caller.
func (h *headplaneSetup) get(ctx context.Context, root string, logf func(string, ...any)) (node, dir string, err error) {
	h.once.Do(func() {
		if h.node, h.err = nodeBinary(ctx, root, logf); h.err != nil {
			return
		}
		h.dir, h.err = headplaneDir(ctx, root, logf)
	})
	return h.node, h.dir, h.err
}

// PrepareHeadplane finds, or installs and builds, the Node binary and the Headplane build that
// StartHeadplane runs, without a stack. A test that starts Headplane where nothing can be fetched
// (a network namespace with loopback alone) calls it first, outside.
func PrepareHeadplane(ctx context.Context, logf func(string, ...any)) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	var setup headplaneSetup
	_, _, err = setup.get(ctx, root, logf)
	return err
}

// HeadplaneOptions shape one Headplane instance.
type HeadplaneOptions struct {
	// Config is the YAML text of Headplane's config.yaml as a deployment recipe has it. The
	// stack overrides server.host, port, cookie_secret, cookie_secure and data_path and
	// headscale.url and api_key with its own. Empty: DefaultHeadplaneConfig.
	Config string
	// Overrides are applied last, merged key by key at every depth: {"server": {"proxy_auth":
	// {"enabled": false}}} changes that one key and keeps its neighbours. A nil value removes
	// the key.
	Overrides map[string]any
}

// DefaultHeadplaneConfig is the recipe of Headplane behind headgate: proxy_auth trusting
// headgate's identity headers from 127.0.0.1, the Headscale user ID as the user header (it
// is unique; names are not), and no Headscale config file.
const DefaultHeadplaneConfig = `server:
  proxy_auth:
    enabled: true
    user_header: X-Headscale-User-Id
    name_header: X-Headscale-User
    email_header: X-Forwarded-Email
    allowed_cidrs: [127.0.0.1/32]
headscale:
  config_strict: false
`

// HeadplaneSkipAuth returns the paths Headplane serves to anyone, for GatewayOptions.SkipAuth:
// its health check, its static files, and the two files its SSH page fetches from its origin.
func HeadplaneSkipAuth() []string {
	return []string{"/admin/healthz", "/admin/assets/", "/admin/hp_ssh.wasm", "/admin/wasm_exec.js"}
}

// Headplane is one running Headplane of a stack.
type Headplane struct {
	// URL is Headplane's own address, http://127.0.0.1:PORT; it serves under URL+"/admin".
	URL string
	// ConfigPath is the config.yaml it runs with.
	ConfigPath string
	// LogPath receives its standard output and error.
	LogPath string
	// DataDir is its server.data_path, holding hp_persist.db.
	DataDir string

	tempDir string // a data directory outside the stack's, removed by Stop; empty if none

	mu   sync.Mutex // guards proc
	proc *process
}

// HeadplaneUser is a row of Headplane's users table.
type HeadplaneUser struct {
	ID string `json:"id"`
	// Sub is the user's subject; proxy_auth users are "proxy:" + the user header's value.
	Sub   string `json:"sub"`
	Name  string `json:"name"`
	Email string `json:"email"`
	// Role is owner for the first user ever seen, member for later ones unless changed.
	Role string `json:"role"`
	// HeadscaleUserID is the Headscale user the person claimed in Headplane, or empty.
	HeadscaleUserID string `json:"headscale_user_id"`
}

// StartHeadplane starts Headplane against the stack's Headscale, with a Headscale API key of
// its own, on a free port of 127.0.0.1 and a data directory of its own, and waits until its
// /admin/healthz answers 200 (which needs Headscale to answer). Close stops it. It needs a
// Headplane build (see headplaneDir) and Node (see nodeBinary), and fails saying how to get
// them.
func (s *Stack) StartHeadplane(ctx context.Context, opts HeadplaneOptions) (*Headplane, error) {
	node, dir, err := s.headplaneSetup.get(ctx, s.root, s.logf)
	if err != nil {
		return nil, fmt.Errorf("start headplane: %w", err)
	}
	ports, err := FreePorts(1)
	if err != nil {
		return nil, err
	}
	apiKey, err := s.CreateAPIKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("start headplane: %w", err)
	}

	s.mu.Lock()
	n := len(s.headplanes) + 1
	hp := &Headplane{
		URL:        "http://" + HostPort(ports[0]),
		ConfigPath: filepath.Join(s.Dir, fmt.Sprintf("headplane%d.yaml", n)),
		LogPath:    filepath.Join(s.Dir, fmt.Sprintf("headplane%d.log", n)),
		DataDir:    filepath.Join(s.Dir, fmt.Sprintf("headplane%d-data", n)),
	}
	s.headplanes = append(s.headplanes, hp)
	s.mu.Unlock()

	// Headplane lower-cases server.data_path; a path with capitals would put its database
	// elsewhere, so such a stack directory gets a data directory in the system's instead.
	if strings.ToLower(hp.DataDir) != hp.DataDir {
		if hp.tempDir, err = os.MkdirTemp("", "hp-"); err != nil {
			return nil, fmt.Errorf("start headplane: %w", err)
		}
		hp.DataDir = hp.tempDir
		if strings.ToLower(hp.DataDir) != hp.DataDir {
			return nil, fmt.Errorf("start headplane: no data directory without capitals (tried %s; set TMPDIR)", hp.DataDir)
		}
	} else if err := os.MkdirAll(hp.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("start headplane: %w", err)
	}

	if err := s.writeHeadplaneConfig(hp, ports[0], apiKey, opts); err != nil {
		return nil, fmt.Errorf("start headplane: %w", err)
	}
	p, err := startProcessEnv(fmt.Sprintf("headplane%d", n), dir, hp.LogPath,
		[]string{"HEADPLANE_CONFIG_PATH=" + hp.ConfigPath}, node, filepath.Join(dir, "build", "server", "index.js"))
	if err != nil {
		return nil, err
	}
	hp.mu.Lock()
	hp.proc = p
	hp.mu.Unlock()
	if err := p.waitHTTP(ctx, hp.URL+"/admin/healthz", 60*time.Second); err != nil {
		return nil, fmt.Errorf("start headplane: %w", err)
	}
	return hp, nil
}

// writeHeadplaneConfig writes hp's config.yaml: the recipe, the stack's values, then the
// overrides.
func (s *Stack) writeHeadplaneConfig(hp *Headplane, port int, apiKey string, opts HeadplaneOptions) error {
	recipe := opts.Config
	if recipe == "" {
		recipe = DefaultHeadplaneConfig
	}
	cfg := map[string]any{}
	if err := yaml.Unmarshal([]byte(recipe), &cfg); err != nil {
		return fmt.Errorf("decode the headplane recipe: %w", err)
	}
	// Headplane wants exactly 32 characters; rand.Text gives 26 of base32.
	secret := (rand.Text() + rand.Text())[:32]
	MergeConfig(cfg, map[string]any{
		"server": map[string]any{
			"host":          "127.0.0.1",
			"port":          port,
			"cookie_secret": secret,
			"cookie_secure": false,
			"data_path":     hp.DataDir,
		},
		"headscale": map[string]any{"url": s.HeadscaleURL, "api_key": apiKey},
	})
	MergeConfig(cfg, opts.Overrides)
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode headplane config: %w", err)
	}
	return os.WriteFile(hp.ConfigPath, data, 0o600)
}

// MergeConfig merges src into dst key by key: a map merges into a map of the same key, nil
// deletes the key, any other value replaces it. Maps of src are copied into dst, not shared.
func MergeConfig(dst, src map[string]any) {
	for key, v := range src {
		if v == nil {
			delete(dst, key)
			continue
		}
		srcMap, srcIsMap := v.(map[string]any)
		if !srcIsMap {
			dst[key] = v
			continue
		}
		dstMap, dstIsMap := dst[key].(map[string]any)
		if !dstIsMap {
			dstMap = map[string]any{}
			dst[key] = dstMap
		}
		MergeConfig(dstMap, srcMap)
	}
}

// Stop ends Headplane and removes its data directory when it lies outside the stack's. It is
// safe to call more than once.
func (hp *Headplane) Stop() {
	hp.mu.Lock()
	p := hp.proc
	hp.mu.Unlock()
	p.stop()
	if hp.tempDir != "" {
		os.RemoveAll(hp.tempDir)
	}
}

// Tail returns the last n lines of Headplane's log.
func (hp *Headplane) Tail(n int) string {
	return tailFile(hp.LogPath, n)
}

// Users reads Headplane's users table (with the sqlite3 command), oldest first. It reads a
// snapshot, never the live file: Headplane keeps its database in rollback-journal mode with no
// busy timeout, so a reader's lock at the moment Headplane commits would make Headplane's own
// write fail with "database is locked" and answer 500.
func (hp *Headplane) Users(ctx context.Context) ([]HeadplaneUser, error) {
	sqlite, err := exec.LookPath("sqlite3")
	if err != nil {
		return nil, errors.New("read headplane users: the sqlite3 command is not installed")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	snapshot, err := snapshotSQLite(ctx, filepath.Join(hp.DataDir, "hp_persist.db"))
	if err != nil {
		return nil, fmt.Errorf("read headplane users: %w", err)
	}
	defer os.Remove(snapshot)
	out, err := runCommand(ctx, "", sqlite, "-json", "-readonly", snapshot,
		"SELECT id, sub, name, email, role, headscale_user_id FROM users ORDER BY created_at, rowid")
	if err != nil {
		return nil, fmt.Errorf("read headplane users: %w", err)
	}
	var users []HeadplaneUser
	if len(strings.TrimSpace(string(out))) == 0 { // sqlite3 -json prints nothing for no rows
		return users, nil
	}
	if err := json.Unmarshal(out, &users); err != nil {
		return nil, fmt.Errorf("read headplane users: decode sqlite3's output: %w", err)
	}
	return users, nil
}
