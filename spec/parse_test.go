package spec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// tutorialDeployment is the example from the Kubernetes documentation
// (concepts/workloads/controllers/deployment), as written there.
const tutorialDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports:
        - containerPort: 80
`

func mustParse(t *testing.T, data string) Result {
	t.Helper()
	r, err := Parse("app.yaml", []byte(data), "")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return r
}

func only[T Object](t *testing.T, r Result) T {
	t.Helper()
	if len(r.Objects) != 1 {
		t.Fatalf("got %d objects, want 1", len(r.Objects))
	}
	o, ok := r.Objects[0].(T)
	if !ok {
		t.Fatalf("got %T", r.Objects[0])
	}
	return o
}

func TestParse_tutorialDeployment(t *testing.T) {
	r := mustParse(t, tutorialDeployment)
	if len(r.Warnings) != 0 {
		t.Errorf("warnings: %v", r.Warnings)
	}
	got := only[*Deployment](t, r)
	want := &Deployment{
		Meta: Meta{
			APIVersion:  "apps/v1",
			Kind:        "Deployment",
			Name:        "nginx-deployment",
			Namespace:   "default",
			Labels:      map[string]string{"app": "nginx"},
			Annotations: map[string]string{},
			Source:      Source{File: "app.yaml", Line: 1},
		},
		Replicas: 3,
		Selector: map[string]string{"app": "nginx"},
		Template: PodTemplate{
			Labels:      map[string]string{"app": "nginx"},
			Annotations: map[string]string{},
			Spec: PodSpec{
				Containers: []Container{{
					Name:            "nginx",
					Image:           "nginx:1.14.2",
					Ports:           []ContainerPort{{ContainerPort: 80, Protocol: "TCP"}},
					ImagePullPolicy: "IfNotPresent",
				}},
				RestartPolicy:                 "Always",
				NodeSelector:                  map[string]string{},
				TerminationGracePeriodSeconds: 30,
			},
		},
		Strategy: Strategy{
			Type:           "RollingUpdate",
			MaxSurge:       IntOrPercent{Value: 25, Percent: true},
			MaxUnavailable: IntOrPercent{Value: 25, Percent: true},
		},
		ProgressDeadlineSeconds: 600,
		RevisionHistoryLimit:    10,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if k := Key(got); k != "Deployment/default/nginx-deployment" {
		t.Errorf("Key = %q", k)
	}
}

func TestParse_abbreviatedDeployments(t *testing.T) {
	tests := []struct {
		name                     string
		manifest                 string
		wantSelector, wantLabels map[string]string
	}{{
		name: "neither selector nor labels gets app: name for both",
		manifest: `apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  template:
    spec:
      containers:
      - name: hello
        image: hello-world
`,
		wantSelector: map[string]string{"app": "hello"},
		wantLabels:   map[string]string{"app": "hello"},
	}, {
		name: "labels without selector select on every label",
		manifest: `apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  template:
    metadata:
      labels: {app: hi, tier: web}
    spec:
      containers: [{name: hello, image: hello-world}]
`,
		wantSelector: map[string]string{"app": "hi", "tier": "web"},
		wantLabels:   map[string]string{"app": "hi", "tier": "web"},
	}, {
		name: "selector without labels labels the template with it",
		manifest: `apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  selector:
    matchLabels: {app: hi}
  template:
    spec:
      containers: [{name: hello, image: hello-world}]
`,
		wantSelector: map[string]string{"app": "hi"},
		wantLabels:   map[string]string{"app": "hi"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := only[*Deployment](t, mustParse(t, tt.manifest))
			if !reflect.DeepEqual(d.Selector, tt.wantSelector) {
				t.Errorf("Selector = %v, want %v", d.Selector, tt.wantSelector)
			}
			if !reflect.DeepEqual(d.Template.Labels, tt.wantLabels) {
				t.Errorf("Template.Labels = %v, want %v", d.Template.Labels, tt.wantLabels)
			}
			if d.Replicas != 1 || d.Namespace != "default" || d.Strategy.Type != RollingUpdate {
				t.Errorf("Replicas %d, Namespace %q, Strategy %q; want 1, default, RollingUpdate", d.Replicas, d.Namespace, d.Strategy.Type)
			}
			c := d.Template.Spec.Containers[0]
			// No tag means latest, which Kubernetes pulls every time.
			if c.ImagePullPolicy != PullAlways {
				t.Errorf("ImagePullPolicy = %q, want Always", c.ImagePullPolicy)
			}
		})
	}
}

func TestParse_containerDefaults(t *testing.T) {
	d := only[*Deployment](t, mustParse(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: api
        image: registry.example.com:5000/shop/api@sha256:0123
        command: [/api]
        args: ["--port", "8080"]
        env: [{name: MODE, value: prod}, {name: EMPTY}]
        ports:
        - {name: http, containerPort: 8080}
        - {containerPort: 53, protocol: UDP, hostPort: 5353}
        resources:
          requests: {memory: 64Mi}
          limits: {cpu: 0.5, memory: 128Mi}
        livenessProbe:
          httpGet: {port: http}
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 2
        startupProbe:
          exec: {command: [cat, /ready]}
          failureThreshold: 30
      - name: latest
        image: busybox:latest
        imagePullPolicy: Never
`))
	if d.Namespace != "shop" {
		t.Errorf("Namespace = %q", d.Namespace)
	}
	if want := (Strategy{Type: RollingUpdate, MaxSurge: IntOrPercent{Value: 1}}); d.Strategy != want {
		t.Errorf("Strategy = %+v, want %+v", d.Strategy, want)
	}
	ps := d.Template.Spec
	if ps.TerminationGracePeriodSeconds != 5 {
		t.Errorf("TerminationGracePeriodSeconds = %d", ps.TerminationGracePeriodSeconds)
	}
	api := ps.Containers[0]
	want := Container{
		Name:    "api",
		Image:   "registry.example.com:5000/shop/api@sha256:0123",
		Command: []string{"/api"},
		Args:    []string{"--port", "8080"},
		Env:     []EnvVar{{Name: "MODE", Value: "prod"}, {Name: "EMPTY", Value: ""}},
		Ports: []ContainerPort{
			{Name: "http", ContainerPort: 8080, Protocol: "TCP"},
			{ContainerPort: 53, HostPort: 5353, Protocol: "UDP"},
		},
		Resources: Resources{
			// The cpu request defaults to its limit; memory has its own.
			Requests: ResourceList{MilliCPU: 500, Memory: 64 << 20},
			Limits:   ResourceList{MilliCPU: 500, Memory: 128 << 20},
		},
		// A digest pins the image, so there is nothing newer to pull.
		ImagePullPolicy: PullIfNotPresent,
		LivenessProbe: &Probe{
			HTTPGet:       &HTTPGetAction{Path: "/", Port: IntOrString{Str: "http", IsStr: true}, Scheme: "HTTP"},
			PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3,
		},
		ReadinessProbe: &Probe{
			TCPSocket:     &TCPSocketAction{Port: IntOrString{Int: 8080}},
			PeriodSeconds: 2, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3,
		},
		StartupProbe: &Probe{
			Exec:          &ExecAction{Command: []string{"cat", "/ready"}},
			PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 30,
		},
	}
	if !reflect.DeepEqual(api, want) {
		t.Errorf("got  %+v\nwant %+v", api, want)
	}
	if p := ps.Containers[1].ImagePullPolicy; p != PullNever {
		t.Errorf("explicit ImagePullPolicy = %q, want Never", p)
	}
}

func TestParse_defaultPullPolicy(t *testing.T) {
	for image, want := range map[string]string{
		"nginx":                       PullAlways,
		"nginx:latest":                PullAlways,
		"nginx:1.27":                  PullIfNotPresent,
		"localhost:5000/app":          PullAlways,
		"localhost:5000/app:v2":       PullIfNotPresent,
		"app@sha256:abc":              PullIfNotPresent,
		"registry.io:443/a/b:latest":  PullAlways,
		"registry.io:443/a/b:1@sha:1": PullIfNotPresent,
	} {
		if got := defaultPullPolicy(image); got != want {
			t.Errorf("defaultPullPolicy(%q) = %q, want %q", image, got, want)
		}
	}
}

func TestParse_service(t *testing.T) {
	r := mustParse(t, `apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app.kubernetes.io/name: MyApp
  ports:
    - protocol: TCP
      port: 80
      targetPort: 9376
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http, nodePort: 30080}
  - {name: dns, port: 53, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  type: ExternalName
  externalName: db.example.com
`)
	if len(r.Objects) != 3 {
		t.Fatalf("got %d objects", len(r.Objects))
	}
	want := []*Service{{
		Meta: Meta{APIVersion: "v1", Kind: "Service", Name: "my-service", Namespace: "default",
			Labels: map[string]string{}, Annotations: map[string]string{}, Source: Source{"app.yaml", 1}},
		Type:     ServiceClusterIP,
		Selector: map[string]string{"app.kubernetes.io/name": "MyApp"},
		Ports:    []ServicePort{{Protocol: "TCP", Port: 80, TargetPort: IntOrString{Int: 9376}}},
	}, {
		Meta: Meta{APIVersion: "v1", Kind: "Service", Name: "web", Namespace: "shop",
			Labels: map[string]string{}, Annotations: map[string]string{}, Source: Source{"app.yaml", 13}},
		Type:     ServiceNodePort,
		Selector: map[string]string{"app": "web"},
		Ports: []ServicePort{
			{Name: "http", Protocol: "TCP", Port: 80, TargetPort: IntOrString{Str: "http", IsStr: true}, NodePort: 30080},
			{Name: "dns", Protocol: "UDP", Port: 53, TargetPort: IntOrString{Int: 53}},
		},
	}, {
		Meta: Meta{APIVersion: "v1", Kind: "Service", Name: "db", Namespace: "default",
			Labels: map[string]string{}, Annotations: map[string]string{}, Source: Source{"app.yaml", 23}},
		Type:         ServiceExternalName,
		Selector:     map[string]string{},
		ExternalName: "db.example.com",
	}}
	for i, w := range want {
		if got := r.Objects[i]; !reflect.DeepEqual(got, w) {
			t.Errorf("object %d:\ngot  %+v\nwant %+v", i, got, w)
		}
	}
}

func TestParse_namespace(t *testing.T) {
	r, err := Parse("ns.yaml", []byte("---\n# comment only\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n  labels: {team: a}\n---\n"), "other")
	if err != nil {
		t.Fatal(err)
	}
	ns := only[*Namespace](t, r)
	if ns.Name != "prod" || ns.Namespace != "" || ns.Labels["team"] != "a" || ns.Source.Line != 4 {
		t.Errorf("got %+v", ns)
	}
	if k := Key(ns); k != "Namespace/prod" {
		t.Errorf("Key = %q", k)
	}
}

func TestParse_defaultNamespace(t *testing.T) {
	r, err := Parse("app.yaml", []byte(tutorialDeployment), "staging")
	if err != nil {
		t.Fatal(err)
	}
	if ns := r.Objects[0].Metadata().Namespace; ns != "staging" {
		t.Errorf("Namespace = %q, want staging", ns)
	}
	if _, err := Parse("app.yaml", []byte(tutorialDeployment), "Bad_NS"); err == nil {
		t.Error("invalid default namespace accepted")
	}
}

func TestParse_warnings(t *testing.T) {
	r := mustParse(t, `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  uid: 6f1c
  resourceVersion: "42"
  creationTimestamp: null
spec:
  template:
    metadata:
      creationTimestamp: null
    spec:
      dnsPolicy: ClusterFirst
      schedulerName: default-scheduler
      securityContext: {}
      containers:
      - name: web
        image: nginx:1.27
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: File
status:
  replicas: 1
`)
	var got []string
	for _, w := range r.Warnings {
		got = append(got, w.String())
	}
	want := []string{
		"app.yaml:5: Deployment/web: metadata.uid: ignored: set by the Kubernetes API server",
		"app.yaml:6: Deployment/web: metadata.resourceVersion: ignored: set by the Kubernetes API server",
		"app.yaml:7: Deployment/web: metadata.creationTimestamp: ignored: set by the Kubernetes API server",
		"app.yaml:11: Deployment/web: spec.template.metadata.creationTimestamp: ignored: set by the Kubernetes API server",
		"app.yaml:13: Deployment/web: spec.template.spec.dnsPolicy: ignored: containers use the DNS of their Docker network",
		"app.yaml:14: Deployment/web: spec.template.spec.schedulerName: ignored: fleet schedules every pod itself",
		"app.yaml:15: Deployment/web: spec.template.spec.securityContext: ignored: empty",
		"app.yaml:19: Deployment/web: spec.template.spec.containers[0].terminationMessagePath: ignored: fleet keeps container logs instead",
		"app.yaml:20: Deployment/web: spec.template.spec.containers[0].terminationMessagePolicy: ignored: fleet keeps container logs instead",
		"app.yaml:21: Deployment/web: status: ignored: status is reported by fleet, not declared",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// deployment is a valid Deployment whose lines 1-10 are fixed; bad
// manifests below add to or change it.
const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - name: web
        image: nginx:1.27
`

func TestParse_badManifests(t *testing.T) {
	tests := []struct {
		name     string
		manifest string
		want     string // the one error expected, in full
	}{{
		name:     "replicas is a word",
		manifest: deployment + "  replicas: \"three\"\n",
		want:     `bad.yaml:11: Deployment/web: spec.replicas: expected an integer, got "three"`,
	}, {
		name:     "replicas is negative",
		manifest: deployment + "  replicas: -1\n",
		want:     `bad.yaml:11: Deployment/web: spec.replicas: must be at least 0, got -1`,
	}, {
		name:     "cpu is not a quantity",
		manifest: deployment + "        resources:\n          requests:\n            cpu: 2 cores\n",
		want:     `bad.yaml:13: Deployment/web: spec.template.spec.containers[0].resources.requests.cpu: invalid quantity "2 cores" (examples: "500m", "2")`,
	}, {
		name:     "memory in GB",
		manifest: deployment + "        resources: {limits: {memory: 4GB}}\n",
		want:     `bad.yaml:11: Deployment/web: spec.template.spec.containers[0].resources.limits.memory: invalid quantity "4GB", did you mean "4G" or "4Gi"? (examples: "512Mi", "4Gi")`,
	}, {
		name:     "limit below request",
		manifest: deployment + "        resources:\n          requests: {memory: 1Gi}\n          limits: {memory: 512Mi}\n",
		want:     `bad.yaml:13: Deployment/web: spec.template.spec.containers[0].resources.limits.memory: must be at least the memory request (1Gi at line 12), got 512Mi`,
	}, {
		name:     "image missing",
		manifest: strings.Replace(deployment, "        image: nginx:1.27\n", "        command: [sh]\n", 1),
		want:     `bad.yaml:9: Deployment/web: spec.template.spec.containers[0].image: required`,
	}, {
		name:     "name missing",
		manifest: strings.Replace(deployment, "  name: web\n", "  labels: {app: web}\n", 1),
		want:     `bad.yaml:4: spec.template.spec.containers: `, // replaced below
	}, {
		name:     "object name not a DNS subdomain",
		manifest: strings.Replace(deployment, "  name: web\n", "  name: Web_App\n", 1),
		want:     `bad.yaml:4: Deployment/Web_App: metadata.name: must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, got "Web_App"`,
	}, {
		name:     "container name not a DNS label",
		manifest: strings.Replace(deployment, "      - name: web\n", "      - name: web.1\n", 1),
		want:     `bad.yaml:9: Deployment/web: spec.template.spec.containers[0].name: must be lowercase letters, digits and '-', starting and ending with a letter or digit, got "web.1"`,
	}, {
		name:     "namespace not a DNS label",
		manifest: strings.Replace(deployment, "  name: web\n", "  name: web\n  namespace: a.b\n", 1),
		want:     `bad.yaml:5: Deployment/web: metadata.namespace: must be lowercase letters, digits and '-', starting and ending with a letter or digit, got "a.b"`,
	}, {
		name:     "two containers with one name",
		manifest: deployment + "      - name: web\n        image: busybox:1.36\n",
		want:     `bad.yaml:11: Deployment/web: spec.template.spec.containers[1].name: duplicate container name "web" (first at line 9)`,
	}, {
		name:     "the same port twice",
		manifest: deployment + "        ports:\n        - containerPort: 80\n      - name: side\n        image: busybox:1.36\n        ports: [{containerPort: 80}]\n",
		want:     `bad.yaml:15: Deployment/web: spec.template.spec.containers[1].ports[0].containerPort: duplicate port 80/TCP (first at line 12)`,
	}, {
		name:     "port out of range",
		manifest: deployment + "        ports:\n        - containerPort: 80800\n",
		want:     `bad.yaml:12: Deployment/web: spec.template.spec.containers[0].ports[0].containerPort: must be between 1 and 65535, got 80800`,
	}, {
		name:     "protocol is lowercase",
		manifest: deployment + "        ports:\n        - containerPort: 80\n          protocol: tcp\n",
		want:     `bad.yaml:13: Deployment/web: spec.template.spec.containers[0].ports[0].protocol: must be TCP or UDP, got "tcp", did you mean TCP?`,
	}, {
		name:     "label key with two slashes",
		manifest: strings.Replace(deployment, "  name: web\n", "  name: web\n  labels:\n    a/b/c: x\n", 1),
		want:     `bad.yaml:6: Deployment/web: metadata.labels[a/b/c]: invalid key "a/b/c": name must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit`,
	}, {
		name:     "label value with a space",
		manifest: strings.Replace(deployment, "  name: web\n", "  name: web\n  labels: {app: my app}\n", 1),
		want:     `bad.yaml:5: Deployment/web: metadata.labels[app]: invalid label value "my app": must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit`,
	}, {
		name:     "restartPolicy of a Job",
		manifest: strings.Replace(deployment, "      containers:\n", "      restartPolicy: OnFailure\n      containers:\n", 1),
		want:     `bad.yaml:8: Deployment/web: spec.template.spec.restartPolicy: must be Always for a Deployment, got "OnFailure" (OnFailure and Never are for Jobs, which fleet does not support yet)`,
	}, {
		name:     "unknown imagePullPolicy",
		manifest: deployment + "        imagePullPolicy: Sometimes\n",
		want:     `bad.yaml:11: Deployment/web: spec.template.spec.containers[0].imagePullPolicy: must be Always, IfNotPresent or Never, got "Sometimes"`,
	}, {
		name:     "unknown strategy",
		manifest: deployment + "  strategy: {type: BlueGrene}\n",
		want:     `bad.yaml:11: Deployment/web: spec.strategy.type: must be RollingUpdate, Recreate, Canary or BlueGreen, got "BlueGrene", did you mean BlueGreen?`,
	}, {
		name:     "a canary without steps",
		manifest: deployment + "  strategy: {type: Canary}\n",
		want:     `bad.yaml:11: Deployment/web: spec.strategy.canary.steps: required when type is Canary: for example [{setWeight: 10}, {pause: {duration: 30s}}, {setWeight: 50}, {pause: {}}]`,
	}, {
		name:     "a canary step with both weight and pause",
		manifest: deployment + "  strategy:\n    type: Canary\n    canary:\n      steps:\n      - {setWeight: 10, pause: {}}\n",
		want:     `bad.yaml:15: Deployment/web: spec.strategy.canary.steps[0]: needs exactly one of setWeight and pause`,
	}, {
		name:     "a canary weight over 100",
		manifest: deployment + "  strategy:\n    type: Canary\n    canary:\n      steps: [{setWeight: 150}]\n",
		want:     `bad.yaml:14: Deployment/web: spec.strategy.canary.steps[0].setWeight: must be at most 100, got 150`,
	}, {
		name:     "a bad pause duration",
		manifest: deployment + "  strategy:\n    type: Canary\n    canary:\n      steps: [{setWeight: 10}, {pause: {duration: soon}}]\n",
		want:     `bad.yaml:14: Deployment/web: spec.strategy.canary.steps[1].pause.duration: expected a duration such as 30s, 2m or 500ms, got "soon"`,
	}, {
		name:     "an analysis without limits",
		manifest: deployment + "  strategy:\n    type: Canary\n    canary:\n      steps: [{setWeight: 10}]\n      analysis: {minRequests: 5}\n",
		want:     `bad.yaml:15: Deployment/web: spec.strategy.canary.analysis: needs maxErrorRate or maxP99 (or both), or leave analysis out`,
	}, {
		name:     "rollingUpdate with a blue-green strategy",
		manifest: deployment + "  strategy:\n    type: BlueGreen\n    rollingUpdate: {maxSurge: 1}\n",
		want:     `bad.yaml:13: Deployment/web: spec.strategy.rollingUpdate: not allowed when type is BlueGreen`,
	}, {
		name:     "matchExpressions",
		manifest: deployment + "  selector:\n    matchExpressions: [{key: app, operator: In, values: [web]}]\n",
		want:     `bad.yaml:12: Deployment/web: spec.selector.matchExpressions: not supported yet; use matchLabels`,
	}, {
		name:     "selector does not match the template's labels",
		manifest: strings.Replace(deployment, "    spec:\n", "    metadata:\n      labels: {app: web}\n    spec:\n", 1) + "  selector:\n    matchLabels: {app: api}\n",
		want:     `bad.yaml:14: Deployment/web: spec.selector.matchLabels: selector app=api does not match the template's labels (app=web); spec.template.metadata.labels must include every selector label`,
	}, {
		name:     "unsupported field",
		manifest: deployment + "        volumeDevices:\n        - {name: data, devicePath: /dev/xvda}\n",
		want:     `bad.yaml:11: Deployment/web: spec.template.spec.containers[0].volumeDevices: not supported (yet)`,
	}, {
		name:     "misspelt field",
		manifest: deployment + "        workdir: /app\n",
		want:     `bad.yaml:11: Deployment/web: spec.template.spec.containers[0].workdir: unknown field, did you mean workingDir? (known: name, image, command, args, env, envFrom, ports, resources, imagePullPolicy, livenessProbe, readinessProbe, startupProbe, workingDir, volumeMounts)`,
	}, {
		name:     "env from a secret without a key",
		manifest: deployment + "        env:\n        - name: PASSWORD\n          valueFrom: {secretKeyRef: {name: db}}\n",
		want:     `bad.yaml:13: Deployment/web: spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.key: required`,
	}, {
		name:     "env with value and valueFrom",
		manifest: deployment + "        env:\n        - name: PASSWORD\n          value: x\n          valueFrom: {secretKeyRef: {name: db, key: pw}}\n",
		want:     `bad.yaml:14: Deployment/web: spec.template.spec.containers[0].env[0].valueFrom: not allowed with value`,
	}, {
		name:     "a secret whose data is not base64",
		manifest: "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\ndata: {password: hunter2!}\n",
		want:     `bad.yaml:4: Secret/db: data[password]: not valid base64 (8 characters); use stringData for plain text`,
	}, {
		name:     "a config key that cannot be a file name",
		manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a/b: c}\n",
		want:     `bad.yaml:4: ConfigMap/cfg: data[a/b]: must consist of letters, digits, '-', '_' or '.' (it can become a file name)`,
	}, {
		name:     "wrong apiVersion",
		manifest: strings.Replace(deployment, "apps/v1", "extensions/v1beta1", 1),
		want:     `bad.yaml:1: Deployment/web: apiVersion: must be apps/v1 for Deployment, got "extensions/v1beta1"`,
	}, {
		name:     "kind not supported yet",
		manifest: "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: data}\nspec: {}\n",
		want:     `bad.yaml:2: StatefulSet/data: kind: kind StatefulSet is not supported yet (supported: Namespace, Deployment, Service, Ingress, ConfigMap, Secret, PersistentVolumeClaim)`,
	}, {
		name:     "a claim without a size",
		manifest: "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec: {accessModes: [ReadWriteOnce]}\n",
		want:     `bad.yaml:4: PersistentVolumeClaim/data: spec.resources.requests.storage: required, such as 1Gi`,
	}, {
		name:     "a claim shared by machines",
		manifest: "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteMany]\n  resources: {requests: {storage: 1Gi}}\n",
		want:     `bad.yaml:5: PersistentVolumeClaim/data: spec.accessModes[0]: fleet's volumes live on one machine: ReadWriteOnce (or ReadWriteOncePod), got "ReadWriteMany"`,
	}, {
		name:     "a mount of a volume the pod does not define",
		manifest: deployment + "        volumeMounts: [{name: data, mountPath: /data}]\n",
		want:     `bad.yaml:11: Deployment/web: spec.template.spec.containers[0].volumeMounts[0].name: no volume named "data" in spec.volumes`,
	}, {
		name:     "unknown kind",
		manifest: strings.Replace(deployment, "kind: Deployment", "kind: Deploymnet", 1),
		want:     `bad.yaml:2: Deploymnet/web: kind: unknown kind Deploymnet, did you mean Deployment? (supported: Namespace, Deployment, Service, Ingress, ConfigMap, Secret, PersistentVolumeClaim)`,
	}, {
		name:     "Service without ports",
		manifest: "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n",
		want:     `bad.yaml:4: Service/web: spec.ports: required: at least one port (only ExternalName services have none)`,
	}, {
		name:     "nodePort outside the range",
		manifest: "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 8080\n",
		want:     `bad.yaml:8: Service/web: spec.ports[0].nodePort: must be between 30000 and 32767, got 8080`,
	}, {
		name:     "ExternalName without externalName",
		manifest: "apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec:\n  type: ExternalName\n",
		want:     `bad.yaml:4: Service/db: spec.externalName: required when type is ExternalName`,
	}, {
		name:     "Namespace with a namespace",
		manifest: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n  namespace: default\n",
		want:     `bad.yaml:5: Namespace/prod: metadata.namespace: not allowed: a Namespace is not itself in a namespace`,
	}, {
		name:     "duplicate YAML key",
		manifest: deployment + "        image: nginx:1.28\n",
		want:     `bad.yaml:11: Deployment/web: spec.template.spec.containers[0].image: duplicate key (first at line 10)`,
	}, {
		name:     "YAML syntax error",
		manifest: deployment + "        args: [a, b\n",
		want:     `bad.yaml:11: invalid YAML: did not find expected ',' or ']'`,
	}, {
		name:     "document that is a list",
		manifest: "- apiVersion: v1\n  kind: Namespace\n",
		want:     `bad.yaml:1: expected a mapping with apiVersion, kind, metadata and spec, got a list`,
	}, {
		name:     "the same object twice in one file",
		manifest: deployment + "---\n" + deployment,
		want:     `bad.yaml:12: Deployment/web: duplicate Deployment default/web (first defined at bad.yaml:1)`,
	}, {
		name:     "probe on a port the container does not have",
		manifest: deployment + "        readinessProbe:\n          httpGet: {path: /healthz, port: http}\n",
		want:     `bad.yaml:12: Deployment/web: spec.template.spec.containers[0].readinessProbe.httpGet.port: no port named "http" in this container's ports`,
	}, {
		name:     "a misspelt fleet annotation value",
		manifest: "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations:\n    fleet.dev/lb-policy: leastconn\nspec:\n  type: LoadBalancer\n  ports: [{port: 80}]\n",
		want:     `bad.yaml:6: Service/web: metadata.annotations[fleet.dev/lb-policy]: must be one of round-robin, least-connections, got "leastconn"`,
	}, {
		name:     "a UDP port on a LoadBalancer service",
		manifest: "apiVersion: v1\nkind: Service\nmetadata:\n  name: dns\nspec:\n  type: LoadBalancer\n  ports: [{port: 53, protocol: UDP}]\n",
		want:     `bad.yaml:7: Service/dns: spec.ports[0].protocol: fleet's load balancer serves TCP only, got UDP (a NodePort service can publish UDP)`,
	}, {
		name:     "an unknown fleet annotation",
		manifest: "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations:\n    fleet.dev/lb-polcy: round-robin\nspec:\n  type: LoadBalancer\n  ports: [{port: 80}]\n",
		want:     `bad.yaml:6: Service/web: metadata.annotations[fleet.dev/lb-polcy]: unknown fleet annotation (known: fleet.dev/lb-mode, fleet.dev/lb-policy, fleet.dev/reclaim-policy, fleet.dev/tls)`,
	}}
	// A Deployment without a name cannot be named in messages.
	tests[6].want = `bad.yaml:3: metadata.name: required`

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse("bad.yaml", []byte(tt.manifest), "")
			if len(r.Objects) != 0 {
				t.Errorf("got %d objects, want none", len(r.Objects))
			}
			var errs ErrorList
			if !errors.As(err, &errs) {
				t.Fatalf("error = %v, want an ErrorList", err)
			}
			if len(errs) != 1 || errs[0].Error() != tt.want {
				t.Errorf("errors:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}

func TestParse_everyProblemInOnePass(t *testing.T) {
	_, err := Parse("app.yaml", []byte(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: lots
  template:
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 0
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: Nodeport
  ports:
  - port: 80
    targetPort: "8080"
`), "")
	want := ErrorList{
		{File: "app.yaml", Line: 6, Object: "Deployment/web", Field: "spec.replicas", Msg: `expected an integer, got "lots"`},
		{File: "app.yaml", Line: 13, Object: "Deployment/web", Field: "spec.template.spec.containers[0].ports[0].containerPort", Msg: "must be between 1 and 65535, got 0"},
		{File: "app.yaml", Line: 20, Object: "Service/web", Field: "spec.type", Msg: `must be ClusterIP, NodePort, LoadBalancer or ExternalName, got "Nodeport", did you mean NodePort?`},
		{File: "app.yaml", Line: 23, Object: "Service/web", Field: "spec.ports[0].targetPort", Msg: `expected a port number or name, got "8080"; write the number without quotes`},
	}
	var got ErrorList
	if !errors.As(err, &got) || !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%v\nwant:\n%v", err, want)
	}
}

func TestFieldError_Error(t *testing.T) {
	for _, tt := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "a.yaml", Line: 3, Object: "Service/web", Field: "spec.ports", Msg: "required"}, "a.yaml:3: Service/web: spec.ports: required"},
		{FieldError{File: "a.yaml", Line: 3, Field: "kind", Msg: "required"}, "a.yaml:3: kind: required"},
		{FieldError{File: "dir", Msg: "no files"}, "dir: no files"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestParse_aliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 12; i++ {
		b.WriteString("a" + itoa(i) + ": &a" + itoa(i) + " [")
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + itoa(i-1))
		}
		b.WriteString("]\n")
	}
	_, err := Parse("bomb.yaml", []byte(b.String()), "")
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("error = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(tutorialDeployment))
	f.Add([]byte(deployment + "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n"))
	f.Add([]byte("a: &a {<<: *a}\n"))
	f.Add([]byte("--- [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse("fuzz.yaml", data, "")
		if err != nil && len(r.Objects) > 0 {
			t.Fatalf("got objects and an error: %v", err)
		}
		for _, o := range r.Objects {
			if o.Metadata().Name == "" {
				t.Fatalf("object without a name: %+v", o)
			}
			if d, ok := o.(*Deployment); ok {
				_ = d.PodSpecHash()
			}
		}
	})
}
