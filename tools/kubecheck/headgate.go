package main

import (
	"maps"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// A variable in headgate's configuration: ${NAME}, or ${NAME:-default} (group 2).
var configVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`)

// defaultConfig is where the image's CMD reads the configuration.
const defaultConfig = "/etc/headgate/gateway.yaml"

// checkHeadgate checks what headgate's Deployment needs: two or more replicas sharing a Redis,
// readiness on /ready and liveness on /ping, a configuration mounted from a ConfigMap at the
// path it is started with, every ${VAR} of that configuration set by the container's
// environment, the three secrets from a Secret, and a listen address reachable from outside
// the pod on the port the probes use.
func (m manifests) checkHeadgate(p *problems, where string, d *appsv1.Deployment) {
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	if replicas < 2 {
		p.add(where, "spec.replicas: got %d, want 2 or more on a shared Redis", replicas)
	}
	i := slices.IndexFunc(d.Spec.Template.Spec.Containers, func(c corev1.Container) bool { return c.Name == "headgate" })
	if i < 0 {
		p.add(where, "no container named headgate")
		return
	}
	c := d.Spec.Template.Spec.Containers[i]
	where += ": container headgate"
	for _, probe := range []struct {
		name, path string
		probe      *corev1.Probe
	}{{"readinessProbe", "/ready", c.ReadinessProbe}, {"livenessProbe", "/ping", c.LivenessProbe}} {
		if probe.probe == nil || probe.probe.HTTPGet == nil || probe.probe.HTTPGet.Path != probe.path {
			p.add(where, "%s: want an httpGet of %s", probe.name, probe.path)
		}
	}

	configPath := defaultConfig
	if j := slices.Index(c.Args, "-config"); j >= 0 && j+1 < len(c.Args) {
		configPath = c.Args[j+1]
	}
	text, ok := m.mountedConfig(p, where, d, c, configPath)
	if !ok {
		return
	}
	var cfg struct {
		Listen string
		Redis  struct{ URL string }
	}
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		p.add(where, "%s: %v", configPath, err)
		return
	}

	env, fromSecret := m.environment(c)
	for _, match := range configVar.FindAllStringSubmatch(text, -1) {
		if match[2] == "" && !env[match[1]] {
			p.add(where, "%s: ${%s} is set by no env or envFrom of the container", configPath, match[1])
		}
	}
	// The secrets the shipped configuration names; on Kubernetes they come from a Secret.
	for _, name := range []string{"OIDC_CLIENT_SECRET", "HEADSCALE_API_KEY", "HEADGATE_SESSION_SECRET"} {
		if !fromSecret[name] {
			p.add(where, "%s: want it from a Secret (envFrom or secretKeyRef)", name)
		}
	}
	if replicas > 1 && cfg.Redis.URL == "" {
		p.add(where, "%s: redis.url is empty: %d replicas must share a Redis", configPath, replicas)
	}
	m.checkListen(p, where, configPath, cfg.Listen, c)
}

// mountedConfig returns the text of the configuration file at configPath, from the ConfigMap
// mounted there.
func (m manifests) mountedConfig(p *problems, where string, d *appsv1.Deployment, c corev1.Container, configPath string) (string, bool) {
	for _, mount := range c.VolumeMounts {
		key := path.Base(configPath)
		switch {
		case mount.SubPath == "" && mount.MountPath == path.Dir(configPath):
		case mount.SubPath != "" && mount.MountPath == configPath:
			key = mount.SubPath
		default:
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != mount.Name || v.ConfigMap == nil {
				continue
			}
			cm := m.configMaps[v.ConfigMap.Name]
			if cm == nil {
				return "", false // reported with the volume
			}
			text, ok := cm.Data[key]
			if !ok {
				p.add(where, "%s: ConfigMap %s has no key %s", configPath, cm.Name, key)
			}
			return text, ok
		}
	}
	p.add(where, "%s: no ConfigMap mounted there", configPath)
	return "", false
}

// environment returns the variables the container's environment sets, and those of them that
// come from a Secret.
func (m manifests) environment(c corev1.Container) (env, fromSecret map[string]bool) {
	env, fromSecret = map[string]bool{}, map[string]bool{}
	for _, from := range c.EnvFrom {
		if ref := from.SecretRef; ref != nil && m.secrets[ref.Name] != nil {
			s := m.secrets[ref.Name]
			for _, key := range slices.Concat(slices.Collect(maps.Keys(s.StringData)), slices.Collect(maps.Keys(s.Data))) {
				env[from.Prefix+key], fromSecret[from.Prefix+key] = true, true
			}
		}
		if ref := from.ConfigMapRef; ref != nil && m.configMaps[ref.Name] != nil {
			for key := range m.configMaps[ref.Name].Data {
				env[from.Prefix+key] = true
			}
		}
	}
	for _, e := range c.Env {
		env[e.Name] = true
		fromSecret[e.Name] = e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
	}
	return env, fromSecret
}

// checkListen reports a listen address that the kubelet's probes and the Service cannot reach:
// on the pod's loopback, or on another port than the container's http port.
func (m manifests) checkListen(p *problems, where, configPath, listen string, c corev1.Container) {
	if listen == "" || configVar.MatchString(listen) {
		return // the image's HEADGATE_LISTEN, or the environment's: nothing to read here
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		p.add(where, "%s: listen %q: %v", configPath, listen, err)
		return
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		p.add(where, "%s: listen %q: on the pod's loopback, out of reach of probes and the Service", configPath, listen)
	}
	n, _ := strconv.Atoi(port)
	if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.ContainerPort == int32(n) }) {
		p.add(where, "%s: listen %q: port %s is not a port of the container", configPath, listen, port)
	}
}
