package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// manifests are the decoded objects by kind and name.
type manifests struct {
	secrets     map[string]*corev1.Secret
	configMaps  map[string]*corev1.ConfigMap
	deployments map[string]*appsv1.Deployment
	where       map[any]string // each object's file:document
}

// problems collects what is wrong, each prefixed by where it was found.
type problems []error

func (p *problems) add(where, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
}

// check reports every problem with objs taken together: names, label selectors that select
// nothing, references to Secrets, ConfigMaps, volumes and ports that do not exist, workloads
// without probes or with a writable, privileged or root container, images not pinned to a
// version, and what headgate's own Deployment needs (checkHeadgate).
func check(objs []object) error {
	m := manifests{
		secrets:     map[string]*corev1.Secret{},
		configMaps:  map[string]*corev1.ConfigMap{},
		deployments: map[string]*appsv1.Deployment{},
		where:       map[any]string{},
	}
	var p problems
	for _, o := range objs {
		m.where[o.obj] = o.where
		meta := o.obj.(metav1.ObjectMetaAccessor).GetObjectMeta()
		for _, msg := range validation.IsDNS1123Subdomain(meta.GetName()) {
			p.add(o.where, "metadata.name %q: %s", meta.GetName(), msg)
		}
		switch obj := o.obj.(type) {
		case *corev1.Secret:
			m.secrets[obj.Name] = obj
		case *corev1.ConfigMap:
			m.configMaps[obj.Name] = obj
		case *appsv1.Deployment:
			m.deployments[obj.Name] = obj
		}
	}
	for _, o := range objs {
		switch obj := o.obj.(type) {
		case *appsv1.Deployment:
			m.checkDeployment(&p, o.where, obj)
		case *corev1.Service:
			m.checkService(&p, o.where, obj)
		case *policyv1.PodDisruptionBudget:
			m.selected(&p, o.where, "spec.selector", obj.Spec.Selector)
		case *networkingv1.NetworkPolicy:
			m.selected(&p, o.where, "spec.podSelector", &obj.Spec.PodSelector)
			for i, rule := range obj.Spec.Ingress {
				for j, peer := range rule.From {
					if peer.PodSelector != nil {
						m.selected(&p, o.where, fmt.Sprintf("spec.ingress[%d].from[%d].podSelector", i, j), peer.PodSelector)
					}
				}
			}
		}
	}
	if d, ok := m.deployments["headgate"]; ok {
		m.checkHeadgate(&p, m.where[d], d)
	} else {
		p.add("manifests", "no Deployment named headgate")
	}
	return errors.Join(p...)
}

// selected reports a selector that selects the pods of no Deployment, and returns the
// Deployment it selects.
func (m manifests) selected(p *problems, where, field string, sel *metav1.LabelSelector) *appsv1.Deployment {
	if sel == nil {
		p.add(where, "%s: missing", field)
		return nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		p.add(where, "%s: %v", field, err)
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(m.deployments)) {
		if d := m.deployments[name]; s.Matches(labels.Set(d.Spec.Template.Labels)) {
			return d
		}
	}
	p.add(where, "%s %s: selects the pods of no Deployment", field, s)
	return nil
}

// checkDeployment checks one Deployment on its own and its references.
func (m manifests) checkDeployment(p *problems, where string, d *appsv1.Deployment) {
	if d.Spec.Replicas == nil {
		p.add(where, "spec.replicas: missing")
	}
	if s, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil || d.Spec.Selector == nil {
		p.add(where, "spec.selector: missing or invalid (%v)", err)
	} else if !s.Matches(labels.Set(d.Spec.Template.Labels)) {
		p.add(where, "spec.selector %s: does not select the Deployment's own pods (labels %v)", s, d.Spec.Template.Labels)
	}
	pod := d.Spec.Template.Spec
	podNonRoot := pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot
	if pod.SecurityContext == nil || pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		p.add(where, "spec.template.spec.securityContext.seccompProfile: want type RuntimeDefault")
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
		if v.ConfigMap != nil && m.configMaps[v.ConfigMap.Name] == nil {
			p.add(where, "volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
		}
		if v.Secret != nil && m.secrets[v.Secret.SecretName] == nil {
			p.add(where, "volume %s: no Secret %s", v.Name, v.Secret.SecretName)
		}
	}
	for _, c := range pod.Containers {
		cw := fmt.Sprintf("%s: container %s", where, c.Name)
		checkImage(p, cw, c.Image)
		for _, probe := range []struct {
			name  string
			probe *corev1.Probe
		}{{"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}} {
			if probe.probe == nil {
				p.add(cw, "%s: missing", probe.name)
				continue
			}
			checkProbePort(p, cw, probe.name, probe.probe, c.Ports)
		}
		sc := c.SecurityContext
		switch {
		case sc == nil:
			p.add(cw, "securityContext: missing")
		default:
			if !podNonRoot && (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
				p.add(cw, "runAsNonRoot: want true (in the pod's or the container's securityContext)")
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				p.add(cw, "securityContext.readOnlyRootFilesystem: want true")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				p.add(cw, "securityContext.allowPrivilegeEscalation: want false")
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				p.add(cw, "securityContext.capabilities.drop: want [ALL]")
			}
		}
		if c.Resources.Limits.Memory().IsZero() {
			p.add(cw, "resources.limits.memory: missing")
		}
		for _, from := range c.EnvFrom {
			if ref := from.SecretRef; ref != nil && m.secrets[ref.Name] == nil {
				p.add(cw, "envFrom: no Secret %s", ref.Name)
			}
			if ref := from.ConfigMapRef; ref != nil && m.configMaps[ref.Name] == nil {
				p.add(cw, "envFrom: no ConfigMap %s", ref.Name)
			}
		}
		for _, env := range c.Env {
			if env.ValueFrom == nil || env.ValueFrom.SecretKeyRef == nil {
				continue
			}
			ref := env.ValueFrom.SecretKeyRef
			if s := m.secrets[ref.Name]; s == nil || !secretHas(s, ref.Key) {
				p.add(cw, "env %s: no key %s in a Secret %s", env.Name, ref.Key, ref.Name)
			}
		}
		for _, mount := range c.VolumeMounts {
			if _, ok := volumes[mount.Name]; !ok {
				p.add(cw, "volumeMount %s: no such volume", mount.Name)
			}
		}
	}
}

// checkImage reports an image without a version: no tag, or latest.
func checkImage(p *problems, where, image string) {
	name := image[strings.LastIndex(image, "/")+1:]
	_, tag, ok := strings.Cut(name, ":")
	if _, digest, _ := strings.Cut(image, "@"); digest != "" {
		return
	}
	if !ok || tag == "" || tag == "latest" {
		p.add(where, "image %q: pin a version (name:tag or @sha256:...), not latest", image)
	}
}

// checkProbePort reports a probe whose port is not one of the container's.
func checkProbePort(p *problems, where, name string, probe *corev1.Probe, ports []corev1.ContainerPort) {
	var port *intstr.IntOrString
	switch {
	case probe.HTTPGet != nil:
		port = &probe.HTTPGet.Port
	case probe.TCPSocket != nil:
		port = &probe.TCPSocket.Port
	default:
		return // exec and gRPC probes name no port to check
	}
	for _, cp := range ports {
		if (port.Type == intstr.String && cp.Name == port.StrVal) || (port.Type == intstr.Int && cp.ContainerPort == port.IntVal) {
			return
		}
	}
	p.add(where, "%s: port %s is not one of the container's ports", name, port.String())
}

// secretHas reports whether the Secret holds key, in data or stringData.
func secretHas(s *corev1.Secret, key string) bool {
	_, inData := s.Data[key]
	_, inString := s.StringData[key]
	return inData || inString
}

// checkService reports a Service that selects no Deployment's pods or targets a port they do
// not have.
func (m manifests) checkService(p *problems, where string, s *corev1.Service) {
	d := m.selected(p, where, "spec.selector", &metav1.LabelSelector{MatchLabels: s.Spec.Selector})
	if d == nil {
		return
	}
	for _, port := range s.Spec.Ports {
		if port.TargetPort.Type != intstr.String {
			continue
		}
		found := false
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, cp := range c.Ports {
				found = found || cp.Name == port.TargetPort.StrVal
			}
		}
		if !found {
			p.add(where, "port %s: targetPort %s is not a port of Deployment %s", port.Name, port.TargetPort.StrVal, d.Name)
		}
	}
}
