package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The manifests operators copy.
const manifestDir = "../../deploy/kubernetes"

// TestShippedManifests checks deploy/kubernetes: every document decodes strictly into its
// k8s.io/api type and passes every check.
func TestShippedManifests(t *testing.T) {
	var out strings.Builder
	if err := run([]string{manifestDir}, &out); err != nil {
		t.Fatalf("kubecheck %s:\n%v", manifestDir, err)
	}
	t.Log(strings.TrimSpace(out.String()))
}

// TestBrokenManifests changes one line of the shipped manifests at a time and checks that
// kubecheck names the problem.
func TestBrokenManifests(t *testing.T) {
	tests := []struct {
		name, file, old, new, want string
	}{
		{"misspelled field", "deployment.yaml", "  replicas: 2", "  replica: 2", `unknown field "replica"`},
		{"field of the wrong type", "deployment.yaml", "  replicas: 2", "  replicas: two", "replicas"},
		{"unknown kind", "service.yaml", "kind: Service", "kind: Servise", `kind "Servise": not a kind kubecheck knows`},
		{"one replica", "deployment.yaml", "  replicas: 2", "  replicas: 1", "spec.replicas: got 1, want 2 or more"},
		{"readiness elsewhere", "deployment.yaml", "path: /ready", "path: /healthz", "readinessProbe: want an httpGet of /ready"},
		{"probe on no port", "deployment.yaml", "path: /ping\n              port: http", "path: /ping\n              port: web", "livenessProbe: port web is not one of the container's ports"},
		{"image not pinned", "deployment.yaml", "headgate:1.0.0", "headgate:latest", "pin a version"},
		{"image without tag", "redis.yaml", "redis:8.10.2-alpine", "redis", "pin a version"},
		{"writable root", "deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem: want true"},
		{"privilege escalation", "redis.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "allowPrivilegeEscalation: want false"},
		{"root allowed", "deployment.yaml", "runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot: want true"},
		{"secret key missing", "secret.yaml", "HEADSCALE_API_KEY:", "HEADSCALE_APIKEY:", "${HEADSCALE_API_KEY} is set by no env or envFrom"},
		{"secret missing", "deployment.yaml", "secretRef:\n                name: headgate", "secretRef:\n                name: headgate-secrets", "envFrom: no Secret headgate-secrets"},
		{"secret in plain text", "deployment.yaml", "envFrom:", "env:\n            - name: OIDC_CLIENT_SECRET\n              value: plain\n          envFrom:", "OIDC_CLIENT_SECRET: want it from a Secret"},
		{"config not mounted", "deployment.yaml", "mountPath: /etc/headgate", "mountPath: /etc/gate", "/etc/headgate/gateway.yaml: no ConfigMap mounted there"},
		{"config key missing", "configmap.yaml", "  gateway.yaml: |", "  headgate.yaml: |", "ConfigMap headgate has no key gateway.yaml"},
		{"listen on loopback", "configmap.yaml", "listen: 0.0.0.0:4180", "listen: 127.0.0.1:4180", "on the pod's loopback"},
		{"listen on another port", "configmap.yaml", "listen: 0.0.0.0:4180", "listen: 0.0.0.0:8080", "port 8080 is not a port of the container"},
		{"no redis", "configmap.yaml", "url: redis://headgate-redis:6379/0", `url: ""`, "redis.url is empty: 2 replicas must share a Redis"},
		{"service selects nothing", "service.yaml", "  selector:\n    app.kubernetes.io/name: headgate", "  selector:\n    app.kubernetes.io/name: headgte", "selects the pods of no Deployment"},
		{"service targets no port", "service.yaml", "targetPort: http", "targetPort: web", "targetPort web is not a port of Deployment headgate"},
		{"policy admits nobody", "redis.yaml", "matchLabels:\n              app.kubernetes.io/name: headgate\n", "matchLabels:\n              app.kubernetes.io/name: nobody\n", "from[0].podSelector app.kubernetes.io/name=nobody: selects the pods of no Deployment"},
		{"bad name", "service.yaml", "name: headgate\n  labels", "name: Headgate\n  labels", `metadata.name "Headgate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := changedCopy(t, tt.file, tt.old, tt.new)
			err := run([]string{dir}, &strings.Builder{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// changedCopy copies the shipped manifests into a directory of the test, with the first old
// in file replaced by new.
func changedCopy(t *testing.T, file, old, new string) string {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if filepath.Base(f) == file {
			if !strings.Contains(text, old) {
				t.Fatalf("%s holds no %q", file, old)
			}
			text = strings.Replace(text, old, new, 1)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
