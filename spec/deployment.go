package spec

import (
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Kubernetes' defaults for a Deployment.
const (
	defaultReplicas                = 1
	defaultProgressDeadlineSeconds = 600
	defaultRevisionHistoryLimit    = 10
	defaultTerminationGracePeriod  = 30
	defaultMaxSurgePercent         = 25
	defaultMaxUnavailablePercent   = 25
)

var (
	deploymentSpecSchema = schema{known: []string{
		"replicas", "selector", "template", "strategy", "minReadySeconds",
		"progressDeadlineSeconds", "revisionHistoryLimit", "paused",
	}}
	selectorSchema = schema{
		known:       []string{"matchLabels"},
		unsupported: map[string]string{"matchExpressions": "not supported yet; use matchLabels"},
	}
	strategySchema      = schema{known: []string{"type", "rollingUpdate", "canary", "blueGreen"}}
	rollingUpdateSchema = schema{known: []string{"maxSurge", "maxUnavailable"}}
	canarySchema        = schema{known: []string{"steps", "analysis"}}
	canaryStepSchema    = schema{known: []string{"setWeight", "pause"}}
	canaryPauseSchema   = schema{known: []string{"duration"}}
	analysisSchema      = schema{known: []string{"maxErrorRate", "maxP99", "minRequests"}}
	blueGreenSchema     = schema{known: []string{"autoPromotionEnabled", "scaleDownDelaySeconds"}}
	templateSchema      = schema{known: []string{"metadata", "spec"}}
	templateMetaSchema  = schema{
		known: []string{"labels", "annotations"},
		unsupported: unsupported("name", "namespace", "generateName", "finalizers", "ownerReferences",
			"uid", "resourceVersion", "generation", "managedFields", "selfLink", "deletionTimestamp",
			"deletionGracePeriodSeconds"),
		ignored: map[string]string{"creationTimestamp": "ignored: set by the Kubernetes API server"},
	}
	podSpecSchema = schema{
		known:  []string{"containers", "initContainers", "restartPolicy", "nodeSelector", "terminationGracePeriodSeconds", "volumes"},
		hidden: []string{"securityContext"},
		unsupported: unsupported("ephemeralContainers", "activeDeadlineSeconds",
			"serviceAccountName", "serviceAccount", "automountServiceAccountToken", "nodeName",
			"hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace", "imagePullSecrets", "hostname",
			"subdomain", "affinity", "tolerations", "hostAliases", "priorityClassName", "priority",
			"dnsConfig", "readinessGates", "runtimeClassName", "enableServiceLinks", "preemptionPolicy",
			"overhead", "topologySpreadConstraints", "setHostnameAsFQDN", "os", "hostUsers",
			"schedulingGates", "resourceClaims", "resources", "hostnameOverride"),
		ignored: map[string]string{
			"dnsPolicy":     "ignored: containers use the DNS of their Docker network",
			"schedulerName": "ignored: fleet schedules every pod itself",
		},
	}
	containerSchema = schema{
		known: []string{"name", "image", "command", "args", "env", "envFrom", "ports", "resources", "imagePullPolicy",
			"livenessProbe", "readinessProbe", "startupProbe", "workingDir", "volumeMounts"},
		unsupported: unsupported("volumeDevices", "lifecycle", "securityContext",
			"stdin", "stdinOnce", "tty", "resizePolicy", "restartPolicy", "restartPolicyRules"),
		ignored: map[string]string{
			"terminationMessagePath":   "ignored: fleet keeps container logs instead",
			"terminationMessagePolicy": "ignored: fleet keeps container logs instead",
		},
	}
	envSchema           = schema{known: []string{"name", "value", "valueFrom"}}
	containerPortSchema = schema{
		known:       []string{"name", "containerPort", "hostPort", "protocol"},
		unsupported: unsupported("hostIP"),
	}
	resourcesSchema    = schema{known: []string{"requests", "limits"}, unsupported: unsupported("claims")}
	resourceListSchema = schema{
		known:       []string{"cpu", "memory"},
		unsupported: unsupported("ephemeral-storage"),
		// Huge pages and extended resources such as nvidia.com/gpu.
		unsupportedIf: func(k string) bool { return strings.HasPrefix(k, "hugepages-") || strings.Contains(k, "/") },
	}
	probeSchema = schema{
		known: []string{"httpGet", "tcpSocket", "exec", "initialDelaySeconds", "periodSeconds",
			"timeoutSeconds", "successThreshold", "failureThreshold"},
		unsupported: unsupported("grpc", "terminationGracePeriodSeconds"),
	}
	httpGetSchema = schema{known: []string{"path", "port", "scheme", "httpHeaders"}, unsupported: unsupported("host")}
	headerSchema  = schema{known: []string{"name", "value"}}
	tcpSchema     = schema{known: []string{"port"}, unsupported: unsupported("host")}
	execSchema    = schema{known: []string{"command"}}
)

// deploymentSpec reads spec into dep and applies the defaults.
// line is where spec is, or the object when there is no spec.
func (d *decoder) deploymentSpec(n *yaml.Node, line int, dep *Deployment) {
	dep.Replicas = defaultReplicas
	dep.ProgressDeadlineSeconds = defaultProgressDeadlineSeconds
	dep.RevisionHistoryLimit = defaultRevisionHistoryLimit
	dep.Strategy = Strategy{
		Type:           RollingUpdate,
		MaxSurge:       IntOrPercent{Value: defaultMaxSurgePercent, Percent: true},
		MaxUnavailable: IntOrPercent{Value: defaultMaxUnavailablePercent, Percent: true},
	}
	var (
		selectorLine   int  // 0 when there is no selector
		templateLabels bool // whether the template declares labels
		podSpecSeen    bool
		minReady       = 0
		deadlineLine   int
	)
	if !d.mapping(n, "spec", " with a pod template") {
		if isNull(n) {
			d.errorf(line, "spec.template.spec.containers", "required: a Deployment needs a pod template with at least one container")
		}
		return
	}
	templateLine := line
	d.fields(n, "spec", deploymentSpecSchema, func(key string, v *yaml.Node, path string) {
		switch key {
		case "replicas":
			if r, ok := d.atLeast(v, path, 0); ok {
				dep.Replicas = r
			}
		case "selector":
			if !d.mapping(v, path, " with matchLabels") {
				return
			}
			selectorLine = d.keyLine
			d.fields(v, path, selectorSchema, func(_ string, v *yaml.Node, path string) {
				selectorLine = d.keyLine
				dep.Selector = d.labels(v, path)
			})
			if len(dep.Selector) == 0 && !hasKey(v, "matchExpressions") {
				d.errorf(v.Line, path+".matchLabels", "must not be empty; leave selector out to default it to the template's labels")
			}
		case "template":
			if !d.mapping(v, path, " with metadata and spec") {
				return
			}
			templateLine = d.keyLine
			d.fields(v, path, templateSchema, func(key string, v *yaml.Node, path string) {
				switch key {
				case "metadata":
					if !d.mapping(v, path, "") {
						return
					}
					d.fields(v, path, templateMetaSchema, func(key string, v *yaml.Node, path string) {
						switch key {
						case "labels":
							dep.Template.Labels = d.labels(v, path)
							templateLabels = len(dep.Template.Labels) > 0
						case "annotations":
							dep.Template.Annotations = d.stringMap(v, path, checkLabelKey, anyValue)
						}
					})
				case "spec":
					podSpecSeen = true
					d.podSpec(v, path, &dep.Template.Spec)
				}
			})
		case "strategy":
			d.strategy(v, path, &dep.Strategy)
		case "minReadySeconds":
			if s, ok := d.atLeast(v, path, 0); ok {
				dep.MinReadySeconds, minReady = s, s
			}
		case "progressDeadlineSeconds":
			if s, ok := d.atLeast(v, path, 1); ok {
				dep.ProgressDeadlineSeconds, deadlineLine = s, v.Line
			}
		case "revisionHistoryLimit":
			if s, ok := d.atLeast(v, path, 0); ok {
				dep.RevisionHistoryLimit = s
			}
		case "paused":
			if p, ok := d.boolean(v, path); ok {
				dep.Paused = p
			}
		}
	})
	if !podSpecSeen {
		d.errorf(templateLine, "spec.template.spec.containers", "required: a Deployment needs a pod template with at least one container")
	}
	if deadlineLine > 0 && dep.ProgressDeadlineSeconds <= minReady {
		d.errorf(deadlineLine, "spec.progressDeadlineSeconds", "must be greater than minReadySeconds (%d)", minReady)
	}

	// Tutorials often leave out the selector, the template's labels or
	// both; fill in what is missing from what is there.
	switch {
	case selectorLine == 0 && !templateLabels:
		dep.Template.Labels = map[string]string{"app": dep.Name}
		dep.Selector = map[string]string{"app": dep.Name}
	case selectorLine == 0:
		dep.Selector = maps.Clone(dep.Template.Labels)
	case !templateLabels:
		dep.Template.Labels = maps.Clone(dep.Selector)
	}
	if dep.Template.Labels == nil {
		dep.Template.Labels = map[string]string{}
	}
	if dep.Template.Annotations == nil {
		dep.Template.Annotations = map[string]string{}
	}
	if dep.Selector == nil {
		dep.Selector = map[string]string{}
	}
	if selectorLine > 0 && len(dep.Selector) > 0 {
		for k, v := range dep.Selector {
			if got, ok := dep.Template.Labels[k]; !ok || got != v {
				d.errorf(selectorLine, "spec.selector.matchLabels", "selector %s does not match the template's labels (%s); spec.template.metadata.labels must include every selector label",
					formatLabels(dep.Selector), formatLabels(dep.Template.Labels))
				break
			}
		}
	}
}

var percent = regexp.MustCompile(`^([0-9]+)%$`)

func (d *decoder) strategy(n *yaml.Node, path string, s *Strategy) {
	if !d.mapping(n, path, " with type and rollingUpdate") {
		return
	}
	lines := map[string]int{} // of the type-specific sections
	surge, unavailable := s.MaxSurge, s.MaxUnavailable
	surgeLine := 0
	var canary CanaryStrategy
	blueGreen := BlueGreenStrategy{AutoPromotion: true, ScaleDownDelaySeconds: defaultScaleDownDelaySeconds}
	d.fields(n, path, strategySchema, func(key string, v *yaml.Node, path string) {
		switch key {
		case "type":
			if t, ok := d.oneOf(v, path, RollingUpdate, Recreate, Canary, BlueGreen); ok {
				s.Type = t
			}
		case "rollingUpdate":
			if !d.mapping(v, path, " with maxSurge and maxUnavailable") {
				return
			}
			lines[key] = d.keyLine
			d.fields(v, path, rollingUpdateSchema, func(key string, v *yaml.Node, path string) {
				switch key {
				case "maxSurge":
					if p, ok := d.intOrPercent(v, path); ok {
						surge, surgeLine = p, v.Line
					}
				case "maxUnavailable":
					if p, ok := d.intOrPercent(v, path); ok {
						if p.Percent && p.Value > 100 {
							d.errorf(v.Line, path, "must be at most 100%%, got %d%%", p.Value)
						}
						unavailable = p
					}
				}
			})
		case "canary":
			lines[key] = d.keyLine
			d.canary(v, path, &canary)
		case "blueGreen":
			lines[key] = d.keyLine
			d.blueGreen(v, path, &blueGreen)
		}
	})
	// A section for another type is a mistake worth naming.
	sections := map[string]string{RollingUpdate: "rollingUpdate", Canary: "canary", BlueGreen: "blueGreen"}
	for _, sec := range []string{"rollingUpdate", "canary", "blueGreen"} {
		if line := lines[sec]; line > 0 && sections[s.Type] != sec {
			d.errorf(line, path+"."+sec, "not allowed when type is %s", s.Type)
		}
	}
	switch s.Type {
	case RollingUpdate:
		if surge.Value == 0 && unavailable.Value == 0 {
			d.errorf(max(surgeLine, lines["rollingUpdate"]), path+".rollingUpdate", "maxSurge and maxUnavailable must not both be 0, or no replica could ever be replaced")
		}
		s.MaxSurge, s.MaxUnavailable = surge, unavailable
		return
	case Canary:
		if lines["canary"] == 0 {
			d.errorf(n.Line, path+".canary.steps", "required when type is Canary: for example [{setWeight: 10}, {pause: {duration: 30s}}, {setWeight: 50}, {pause: {}}]")
		}
		s.Canary = &canary
	case BlueGreen:
		s.BlueGreen = &blueGreen
	}
	s.MaxSurge, s.MaxUnavailable = IntOrPercent{}, IntOrPercent{}
}

// defaultScaleDownDelaySeconds is how long a blue-green rollout keeps the
// old set after the switch, as Argo Rollouts does.
const defaultScaleDownDelaySeconds = 30

func (d *decoder) canary(n *yaml.Node, path string, c *CanaryStrategy) {
	if !d.mapping(n, path, " with steps") {
		return
	}
	hasSteps := false
	d.fields(n, path, canarySchema, func(key string, v *yaml.Node, path string) {
		switch key {
		case "steps":
			hasSteps = true
			items := d.list(v, path, " of steps")
			if len(items) == 0 && !isNull(v) {
				d.errorf(v.Line, path, "needs at least one step, such as {setWeight: 10}")
			}
			for i, item := range items {
				ipath := fmt.Sprintf("%s[%d]", path, i)
				if !d.mapping(item, ipath, " with setWeight or pause") {
					continue
				}
				var step CanaryStep
				keys := 0
				d.fields(item, ipath, canaryStepSchema, func(key string, v *yaml.Node, path string) {
					keys++
					switch key {
					case "setWeight":
						if w, ok := d.atLeast(v, path, 1); ok {
							if w > 100 {
								d.errorf(v.Line, path, "must be at most 100, got %d", w)
								return
							}
							step.SetWeight = &w
						}
					case "pause":
						step.Pause = &CanaryPause{}
						if isNull(v) || !d.mapping(v, path, " such as {duration: 30s}, or {} to wait for fleet rollout promote") {
							return
						}
						d.fields(v, path, canaryPauseSchema, func(_ string, v *yaml.Node, path string) {
							if dur, ok := d.duration(v, path); ok {
								if dur < time.Second {
									d.errorf(v.Line, path, "must be at least 1s; leave duration out to wait for fleet rollout promote")
									return
								}
								step.Pause.Seconds = int(dur.Round(time.Second) / time.Second)
							}
						})
					}
				})
				if keys != 1 {
					d.errorf(item.Line, ipath, "needs exactly one of setWeight and pause")
					continue
				}
				if step.SetWeight == nil && step.Pause == nil {
					continue // reported
				}
				c.Steps = append(c.Steps, step)
			}
		case "analysis":
			if !d.mapping(v, path, " with maxErrorRate, maxP99 and minRequests") {
				return
			}
			a := &CanaryAnalysis{MinRequests: defaultAnalysisMinRequests}
			d.fields(v, path, analysisSchema, func(key string, v *yaml.Node, path string) {
				switch key {
				case "maxErrorRate":
					if r, ok := d.rate(v, path); ok {
						a.MaxErrorPercent = r
					}
				case "maxP99":
					if dur, ok := d.duration(v, path); ok {
						if dur < time.Millisecond {
							d.errorf(v.Line, path, "must be at least 1ms, got %s", dur)
							return
						}
						a.MaxP99Millis = int(dur / time.Millisecond)
					}
				case "minRequests":
					if m, ok := d.atLeast(v, path, 1); ok {
						a.MinRequests = m
					}
				}
			})
			if a.MaxErrorPercent == 0 && a.MaxP99Millis == 0 {
				d.errorf(v.Line, path, "needs maxErrorRate or maxP99 (or both), or leave analysis out")
			}
			c.Analysis = a
		}
	})
	if !hasSteps {
		d.errorf(n.Line, path+".steps", "required: for example [{setWeight: 10}, {pause: {duration: 30s}}, {setWeight: 50}, {pause: {}}]")
	}
}

// defaultAnalysisMinRequests is how many canary answers a verdict needs.
const defaultAnalysisMinRequests = 20

func (d *decoder) blueGreen(n *yaml.Node, path string, b *BlueGreenStrategy) {
	if isNull(n) || !d.mapping(n, path, " with autoPromotionEnabled and scaleDownDelaySeconds") {
		return
	}
	d.fields(n, path, blueGreenSchema, func(key string, v *yaml.Node, path string) {
		switch key {
		case "autoPromotionEnabled":
			if p, ok := d.boolean(v, path); ok {
				b.AutoPromotion = p
			}
		case "scaleDownDelaySeconds":
			if s, ok := d.atLeast(v, path, 0); ok {
				b.ScaleDownDelaySeconds = s
			}
		}
	})
}

// duration reads a duration: "30s", "1m30s", "500ms", or a number of
// seconds.
func (d *decoder) duration(n *yaml.Node, path string) (time.Duration, bool) {
	if isNull(n) {
		return 0, false
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		s, ok := d.atLeast(n, path, 0)
		return time.Duration(s) * time.Second, ok
	}
	if n.Kind == yaml.ScalarNode {
		if v, err := time.ParseDuration(n.Value); err == nil && v >= 0 {
			return v, true
		}
	}
	d.errorf(n.Line, path, "expected a duration such as 30s, 2m or 500ms, got %s", describe(n))
	return 0, false
}

// rate reads a percentage: "5%", or a fraction such as 0.05.
func (d *decoder) rate(n *yaml.Node, path string) (float64, bool) {
	if isNull(n) {
		return 0, false
	}
	if n.Kind == yaml.ScalarNode {
		v, pct := n.Value, strings.HasSuffix(n.Value, "%")
		f, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
		if err == nil && !pct {
			f *= 100
		}
		if err == nil && f > 0 && f <= 100 {
			return f, true
		}
	}
	d.errorf(n.Line, path, "expected a share above 0 and at most 100%%, such as 5%% or 0.05, got %s", describe(n))
	return 0, false
}

// intOrPercent reads a count such as 1 or a percentage such as "25%".
func (d *decoder) intOrPercent(n *yaml.Node, path string) (IntOrPercent, bool) {
	if isNull(n) {
		return IntOrPercent{}, false
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		v, ok := d.atLeast(n, path, 0)
		return IntOrPercent{Value: v}, ok
	}
	if n.Kind == yaml.ScalarNode {
		if m := percent.FindStringSubmatch(n.Value); m != nil {
			if v, err := strconv.Atoi(m[1]); err == nil && v <= 1_000_000 {
				return IntOrPercent{Value: v, Percent: true}, true
			}
		}
	}
	d.errorf(n.Line, path, "expected a count such as 1 or a percentage such as 25%%, got %s", describe(n))
	return IntOrPercent{}, false
}

// podSpec reads a pod template's spec into ps and applies the defaults.
func (d *decoder) podSpec(n *yaml.Node, path string, ps *PodSpec) {
	ps.RestartPolicy = "Always"
	ps.TerminationGracePeriodSeconds = defaultTerminationGracePeriod
	ps.NodeSelector = map[string]string{}
	if !d.mapping(n, path, " with containers") {
		if isNull(n) {
			d.errorf(n.Line, path+".containers", "required: at least one container")
		}
		return
	}
	haveContainers := false
	d.fields(n, path, podSpecSchema, func(key string, v *yaml.Node, path string) {
		switch key {
		case "containers":
			haveContainers = true
			d.containers(v, path, ps)
		case "restartPolicy":
			s, ok := d.str(v, path)
			switch {
			case !ok || s == "Always":
			case s == "OnFailure" || s == "Never":
				d.errorf(v.Line, path, "must be Always for a Deployment, got %q (OnFailure and Never are for Jobs, which fleet does not support yet)", s)
			default:
				d.errorf(v.Line, path, "must be Always for a Deployment, got %q", s)
			}
		case "nodeSelector":
			ps.NodeSelector = d.labels(v, path)
		case "volumes":
			ps.Volumes = d.volumes(v, path)
		case "initContainers":
			ps.InitContainers = d.initContainers(v, path)
		case "terminationGracePeriodSeconds":
			if s, ok := d.atLeast(v, path, 0); ok {
				ps.TerminationGracePeriodSeconds = s
			}
		case "securityContext":
			// Generators write an empty one; anything in it would matter.
			if isNull(v) || v.Kind == yaml.MappingNode && len(v.Content) == 0 {
				d.warnf(v.Line, path, "ignored: empty")
			} else {
				d.errorf(v.Line, path, "%s", notSupported)
			}
		}
	})
	if !haveContainers {
		d.errorf(n.Line, path+".containers", "required: at least one container")
	}
	d.checkMounts(ps, path)
	for i, ic := range ps.InitContainers {
		for _, c := range ps.Containers {
			if ic.Name != "" && ic.Name == c.Name {
				d.errorf(n.Line, fmt.Sprintf("%s.initContainers[%d].name", path, i), "%q is also the name of a container; names are unique in a pod", c.Name)
			}
		}
	}
}

// initContainers reads the init containers: containers without probes
// or ports that run to completion, in order, before the others start.
func (d *decoder) initContainers(n *yaml.Node, path string) []Container {
	var out []Container
	names := map[string]bool{}
	for i, item := range d.list(n, path, " of init containers") {
		cpath := fmt.Sprintf("%s[%d]", path, i)
		if !d.mapping(item, cpath, " with name and image") {
			continue
		}
		c, lines := d.container(item, cpath)
		if names[c.Name] {
			d.errorf(lines.name, cpath+".name", "duplicate init container name %q", c.Name)
		}
		names[c.Name] = true
		for _, f := range []struct {
			key string
			set bool
		}{{"ports", len(c.Ports) > 0}, {"livenessProbe", c.LivenessProbe != nil}, {"readinessProbe", c.ReadinessProbe != nil}, {"startupProbe", c.StartupProbe != nil}} {
			if f.set {
				d.errorf(item.Line, cpath+"."+f.key, "not allowed on an init container: it runs to completion before the pod serves")
			}
		}
		out = append(out, c)
	}
	return out
}

// containers reads the container list, checking what spans containers:
// unique names, ports and host ports.
func (d *decoder) containers(n *yaml.Node, path string, ps *PodSpec) {
	items := d.list(n, path, " of containers")
	if len(items) == 0 {
		if n.Kind == yaml.SequenceNode || isNull(n) {
			d.errorf(n.Line, path, "required: at least one container")
		}
		return
	}
	names := map[string]int{}
	ports := map[portKey]int{}
	hostPorts := map[portKey]int{}
	for i, item := range items {
		cpath := fmt.Sprintf("%s[%d]", path, i)
		if !d.mapping(item, cpath, " with name and image") {
			if isNull(item) {
				d.errorf(item.Line, cpath, "expected a mapping with name and image, got nothing")
			}
			continue
		}
		c, lines := d.container(item, cpath)
		if c.Name != "" {
			if first, dup := names[c.Name]; dup {
				d.errorf(lines.name, cpath+".name", "duplicate container name %q (first at line %d)", c.Name, first)
			} else {
				names[c.Name] = lines.name
			}
		}
		for j, p := range c.Ports {
			ppath := fmt.Sprintf("%s.ports[%d]", cpath, j)
			k := portKey{p.ContainerPort, p.Protocol}
			if first, dup := ports[k]; dup {
				d.errorf(lines.ports[j], ppath+".containerPort", "duplicate port %d/%s (first at line %d)", k.port, k.protocol, first)
			} else {
				ports[k] = lines.ports[j]
			}
			if p.HostPort == 0 {
				continue
			}
			k = portKey{p.HostPort, p.Protocol}
			if first, dup := hostPorts[k]; dup {
				d.errorf(lines.ports[j], ppath+".hostPort", "duplicate host port %d/%s (first at line %d)", k.port, k.protocol, first)
			} else {
				hostPorts[k] = lines.ports[j]
			}
		}
		ps.Containers = append(ps.Containers, c)
	}
}

// containerLines remembers where things were written, for checks that
// span containers.
type containerLines struct {
	name  int
	ports []int // line of each port's entry
}

// portUse is a probe's reference to a named port, checked once the
// container's ports are known.
type portUse struct {
	name string
	line int
	path string
}

func (d *decoder) container(n *yaml.Node, path string) (Container, containerLines) {
	var c Container
	var lines containerLines
	var named []portUse
	var requests, limits resourceLines
	haveName, haveImage := false, false
	d.fields(n, path, containerSchema, func(key string, v *yaml.Node, path string) {
		switch key {
		case "name":
			s, ok := d.str(v, path)
			if !ok {
				return
			}
			haveName = true
			if s == "" {
				d.errorf(v.Line, path, "required")
			} else if msg := checkDNSLabel(s); msg != "" {
				d.errorf(v.Line, path, "%s", msg)
			}
			c.Name, lines.name = s, v.Line
		case "image":
			s, ok := d.str(v, path)
			if !ok {
				return
			}
			haveImage = true
			if s == "" {
				d.errorf(v.Line, path, "required")
			} else if msg := checkImage(s); msg != "" {
				d.errorf(v.Line, path, "%s", msg)
			}
			c.Image = s
		case "command":
			c.Command = d.stringList(v, path)
		case "args":
			c.Args = d.stringList(v, path)
		case "workingDir":
			if s, ok := d.str(v, path); ok {
				if s != "" && !strings.HasPrefix(s, "/") {
					d.errorf(v.Line, path, "must be an absolute path, got %q", s)
				}
				c.WorkingDir = s
			}
		case "env":
			c.Env = d.env(v, path)
		case "envFrom":
			c.EnvFrom = d.envFrom(v, path)
		case "volumeMounts":
			c.VolumeMounts = d.volumeMounts(v, path)
		case "ports":
			c.Ports, lines.ports = d.containerPorts(v, path)
		case "resources":
			if !d.mapping(v, path, " with requests and limits") {
				return
			}
			d.fields(v, path, resourcesSchema, func(key string, v *yaml.Node, path string) {
				switch key {
				case "requests":
					c.Resources.Requests, requests = d.resourceList(v, path)
				case "limits":
					c.Resources.Limits, limits = d.resourceList(v, path)
				}
			})
		case "imagePullPolicy":
			if s, ok := d.oneOf(v, path, PullAlways, PullIfNotPresent, PullNever); ok {
				c.ImagePullPolicy = s
			}
		case "livenessProbe":
			c.LivenessProbe = d.probe(v, path, true, &named)
		case "readinessProbe":
			c.ReadinessProbe = d.probe(v, path, false, &named)
		case "startupProbe":
			c.StartupProbe = d.probe(v, path, true, &named)
		}
	})
	if !haveName {
		d.errorf(n.Line, path+".name", "required")
	}
	if !haveImage {
		d.errorf(n.Line, path+".image", "required")
	}
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = defaultPullPolicy(c.Image)
	}
	for _, u := range named {
		found := false
		for _, p := range c.Ports {
			found = found || p.Name == u.name
		}
		if !found {
			d.errorf(u.line, u.path, "no port named %q in this container's ports", u.name)
		}
	}
	d.checkResources(&c.Resources, path+".resources", requests, limits)
	return c, lines
}

func (d *decoder) env(n *yaml.Node, path string) []EnvVar {
	var env []EnvVar
	for i, item := range d.list(n, path, " of name and value pairs") {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		if !d.mapping(item, ipath, " with name and value") {
			continue
		}
		var e EnvVar
		haveName := false
		hasValue := false
		d.fields(item, ipath, envSchema, func(key string, v *yaml.Node, path string) {
			if key == "valueFrom" {
				e.ValueFrom = d.valueFrom(v, path)
				if hasValue {
					d.errorf(v.Line, path, "not allowed with value")
				}
				return
			}
			s, ok := d.str(v, path)
			if !ok {
				return
			}
			switch key {
			case "name":
				haveName = true
				if s == "" {
					d.errorf(v.Line, path, "required")
				} else if strings.ContainsAny(s, "=\x00") {
					d.errorf(v.Line, path, "must not contain '=', got %q", s)
				}
				e.Name = s
			case "value":
				e.Value, hasValue = s, true
				if e.ValueFrom != nil {
					d.errorf(v.Line, path, "not allowed with valueFrom")
				}
			}
		})
		if !haveName {
			d.errorf(item.Line, ipath+".name", "required")
		}
		env = append(env, e)
	}
	return env
}

func (d *decoder) containerPorts(n *yaml.Node, path string) ([]ContainerPort, []int) {
	var ports []ContainerPort
	var lines []int
	names := map[string]int{}
	for i, item := range d.list(n, path, " of ports") {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		if !d.mapping(item, ipath, " with containerPort") {
			continue
		}
		p := ContainerPort{Protocol: ProtocolTCP}
		d.fields(item, ipath, containerPortSchema, func(key string, v *yaml.Node, path string) {
			switch key {
			case "name":
				if s, ok := d.str(v, path); ok && s != "" {
					if msg := checkPortName(s); msg != "" {
						d.errorf(v.Line, path, "%s", msg)
					} else if first, dup := names[s]; dup {
						d.errorf(v.Line, path, "duplicate port name %q (first at line %d)", s, first)
					} else {
						names[s] = v.Line
					}
					p.Name = s
				}
			case "containerPort":
				if port, ok := d.port(v, path); ok {
					p.ContainerPort = port
				}
			case "hostPort":
				if port, ok := d.integer(v, path); ok && port != 0 {
					if port < 1 || port > 65535 {
						d.errorf(v.Line, path, "must be between 1 and 65535, got %d", port)
					}
					p.HostPort = port
				}
			case "protocol":
				if s, ok := d.protocol(v, path); ok {
					p.Protocol = s
				}
			}
		})
		if p.ContainerPort == 0 && !hasKey(item, "containerPort") {
			d.errorf(item.Line, ipath+".containerPort", "required")
		}
		ports = append(ports, p)
		lines = append(lines, item.Line)
	}
	return ports, lines
}

// hasKey reports whether mapping n has key, for "required" checks that must
// not repeat an error already reported about the value.
func hasKey(n *yaml.Node, key string) bool {
	for _, kv := range pairs(n) {
		if kv[0].Value == key {
			return true
		}
	}
	return false
}

// resourceLines remembers where cpu and memory were written and as what.
type resourceLines struct {
	cpu, memory int
}

func (d *decoder) resourceList(n *yaml.Node, path string) (ResourceList, resourceLines) {
	var rl ResourceList
	var lines resourceLines
	if !d.mapping(n, path, " with cpu and memory") {
		return rl, lines
	}
	d.fields(n, path, resourceListSchema, func(key string, v *yaml.Node, path string) {
		q, ok := d.quantity(v, path, key)
		if !ok {
			return
		}
		switch key {
		case "cpu":
			rl.MilliCPU, lines.cpu = q, v.Line
		case "memory":
			rl.Memory, lines.memory = q, v.Line
		}
	})
	return rl, lines
}

// checkResources defaults requests to limits and checks that no limit is
// below its request.
func (d *decoder) checkResources(r *Resources, path string, requests, limits resourceLines) {
	if requests.cpu == 0 && limits.cpu > 0 {
		r.Requests.MilliCPU = r.Limits.MilliCPU
	} else if limits.cpu > 0 && r.Limits.MilliCPU < r.Requests.MilliCPU {
		d.errorf(limits.cpu, path+".limits.cpu", "must be at least the cpu request (%s at line %d), got %s",
			formatMilliCPU(r.Requests.MilliCPU), requests.cpu, formatMilliCPU(r.Limits.MilliCPU))
	}
	if requests.memory == 0 && limits.memory > 0 {
		r.Requests.Memory = r.Limits.Memory
	} else if limits.memory > 0 && r.Limits.Memory < r.Requests.Memory {
		d.errorf(limits.memory, path+".limits.memory", "must be at least the memory request (%s at line %d), got %s",
			formatBytes(r.Requests.Memory), requests.memory, formatBytes(r.Limits.Memory))
	}
}

// probe reads a probe and applies Kubernetes' defaults. Named ports are
// added to named, for the caller to check against the container's ports.
func (d *decoder) probe(n *yaml.Node, path string, livenessLike bool, named *[]portUse) *Probe {
	if !d.mapping(n, path, " with httpGet, tcpSocket or exec") {
		return nil
	}
	p := &Probe{PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3}
	handlers := 0
	portRef := func(v *yaml.Node, path string) IntOrString {
		ref, ok := d.portRef(v, path)
		if ok && ref.IsStr {
			*named = append(*named, portUse{ref.Str, v.Line, path})
		}
		return ref
	}
	d.fields(n, path, probeSchema, func(key string, v *yaml.Node, path string) {
		switch key {
		case "httpGet":
			if !d.mapping(v, path, " with port") {
				return
			}
			handlers++
			h := &HTTPGetAction{Path: "/", Scheme: "HTTP"}
			havePort := false
			d.fields(v, path, httpGetSchema, func(key string, v *yaml.Node, path string) {
				switch key {
				case "path":
					if s, ok := d.str(v, path); ok && s != "" {
						h.Path = s
					}
				case "port":
					havePort = true
					h.Port = portRef(v, path)
				case "scheme":
					if s, ok := d.oneOf(v, path, "HTTP", "HTTPS"); ok {
						h.Scheme = s
					}
				case "httpHeaders":
					h.HTTPHeaders = d.headers(v, path)
				}
			})
			if !havePort {
				d.errorf(v.Line, path+".port", "required")
			}
			p.HTTPGet = h
		case "tcpSocket":
			if !d.mapping(v, path, " with port") {
				return
			}
			handlers++
			t := &TCPSocketAction{}
			havePort := false
			d.fields(v, path, tcpSchema, func(_ string, v *yaml.Node, path string) {
				havePort = true
				t.Port = portRef(v, path)
			})
			if !havePort {
				d.errorf(v.Line, path+".port", "required")
			}
			p.TCPSocket = t
		case "exec":
			if !d.mapping(v, path, " with command") {
				return
			}
			handlers++
			e := &ExecAction{}
			d.fields(v, path, execSchema, func(_ string, v *yaml.Node, path string) {
				e.Command = d.stringList(v, path)
			})
			if len(e.Command) == 0 {
				d.errorf(v.Line, path+".command", "required")
			}
			p.Exec = e
		case "initialDelaySeconds":
			if s, ok := d.atLeast(v, path, 0); ok {
				p.InitialDelaySeconds = s
			}
		case "periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold":
			s, ok := d.atLeast(v, path, 0)
			if !ok || s == 0 {
				return // 0 means the default, as in Kubernetes
			}
			switch key {
			case "periodSeconds":
				p.PeriodSeconds = s
			case "timeoutSeconds":
				p.TimeoutSeconds = s
			case "failureThreshold":
				p.FailureThreshold = s
			case "successThreshold":
				if livenessLike && s != 1 {
					d.errorf(v.Line, path, "must be 1 for liveness and startup probes, got %d", s)
				}
				p.SuccessThreshold = s
			}
		}
	})
	switch {
	case handlers == 0:
		d.errorf(n.Line, path, "must set one of httpGet, tcpSocket or exec")
	case handlers > 1:
		d.errorf(n.Line, path, "must set only one of httpGet, tcpSocket or exec")
	}
	return p
}

func (d *decoder) headers(n *yaml.Node, path string) []HTTPHeader {
	var hs []HTTPHeader
	for i, item := range d.list(n, path, " of name and value pairs") {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		if !d.mapping(item, ipath, " with name and value") {
			continue
		}
		var h HTTPHeader
		d.fields(item, ipath, headerSchema, func(key string, v *yaml.Node, path string) {
			s, ok := d.str(v, path)
			if !ok {
				return
			}
			if key == "name" {
				h.Name = s
			} else {
				h.Value = s
			}
		})
		if h.Name == "" {
			d.errorf(item.Line, ipath+".name", "required")
		}
		hs = append(hs, h)
	}
	return hs
}
