{{/* Names, labels and the pieces the control plane, dispatcher and migration share. */}}

{{- define "hookd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hookd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Object names, short enough for a Service name (63) with the suffix. */}}
{{- define "hookd.control.fullname" -}}
{{- printf "%s-control" (include "hookd.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{- define "hookd.dispatcher.fullname" -}}
{{- printf "%s-dispatcher" (include "hookd.fullname" . | trunc 52 | trimSuffix "-") }}
{{- end }}

{{- define "hookd.migrate.fullname" -}}
{{- printf "%s-migrate" (include "hookd.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{- define "hookd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hookd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hookd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hookd.labels" -}}
helm.sh/chart: {{ include "hookd.chart" . }}
{{ include "hookd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hookd
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component: call with (dict "ctx" $ "component" "control-plane"). */}}
{{- define "hookd.componentLabels" -}}
{{ include "hookd.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "hookd.componentSelectorLabels" -}}
{{ include "hookd.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "hookd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hookd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hookd.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The Secret the pods read: the one the chart creates or existingSecret. */}}
{{- define "hookd.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- include "hookd.fullname" . }}
{{- end }}
{{- end }}

{{/*
Checks the secret values when the chart creates the Secret, so a missing or malformed one
fails the render instead of a pod at start-up.
*/}}
{{- define "hookd.checkSecrets" -}}
{{- if not .Values.secrets.existingSecret }}
{{- $s := .Values.secrets }}
{{- if not $s.encryptionKey }}
{{- fail "secrets.encryptionKey is required (base64 of 32 random bytes: `openssl rand -base64 32`), or set secrets.existingSecret" }}
{{- end }}
{{- if ne (len (b64dec $s.encryptionKey)) 32 }}
{{- fail "secrets.encryptionKey must be the base64 of exactly 32 bytes (`openssl rand -base64 32`)" }}
{{- end }}
{{- if lt (len $s.dispatcherToken) 16 }}
{{- fail "secrets.dispatcherToken is required: at least 16 printable characters (`openssl rand -hex 24`), or set secrets.existingSecret" }}
{{- end }}
{{- if not $s.databaseUrl }}
{{- fail "secrets.databaseUrl is required (postgres://USER:PASSWORD@HOST:5432/DB), or set secrets.existingSecret" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
One value as TOML. Helm reads numbers from values files as floats, and Helm's toToml writes
3 as `3.0`, which hookd's integer settings refuse; this writes whole numbers as integers.
*/}}
{{- define "hookd.tomlValue" -}}
{{- $v := . -}}
{{- if kindIs "map" $v -}}
{ {{- range $i, $k := keys $v | sortAlpha }}{{ if $i }}, {{ end }}{{ $k | toJson }} = {{ include "hookd.tomlValue" (index $v $k) }}{{ end -}} }
{{- else if kindIs "slice" $v -}}
[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "hookd.tomlValue" $e }}{{ end }}]
{{- else if kindIs "float64" $v -}}
{{- if eq $v (floor $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end -}}
{{- else if kindIs "string" $v -}}
{{- $v | toJson -}}
{{- else if kindIs "invalid" $v -}}
{{- fail "settings: a null value has no TOML form; remove the key instead" -}}
{{- else -}}
{{- $v -}}
{{- end -}}
{{- end }}

{{/* A settings map as a TOML document, one top-level key a line. */}}
{{- define "hookd.toml" -}}
{{- range $i, $k := keys . | sortAlpha }}
{{- if $i }}{{ "\n" }}{{ end }}{{ $k }} = {{ include "hookd.tomlValue" (index $ $k) }}
{{- end }}
{{- end }}

{{/* A figment dict for an environment variable: {a="x", b="y"}. */}}
{{- define "hookd.envDict" -}}
{ {{- range $i, $k := keys . | sortAlpha }}{{ if $i }}, {{ end }}{{ $k }}={{ index $ $k | toJson }}{{ end -}} }
{{- end }}

{{/* One variable from a Secret: (dict "name" SECRET "env" VAR "key" KEY ["optional" true]). */}}
{{- define "hookd.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}

{{/*
The secrets the control plane and the migration share, read from the Secret `name`:
call with (dict "ctx" $ "name" SECRET).
*/}}
{{- define "hookd.control.secretEnv" -}}
{{- $keys := .ctx.Values.secrets.keys -}}
{{ include "hookd.secretEnv" (dict "name" .name "env" "HOOKD_DATABASE_URL" "key" $keys.databaseUrl) }}
{{ include "hookd.secretEnv" (dict "name" .name "env" "HOOKD_ENCRYPTION_KEY" "key" $keys.encryptionKey) }}
{{ include "hookd.secretEnv" (dict "name" .name "env" "HOOKD_DISPATCHER_TOKEN" "key" $keys.dispatcherToken) }}
{{ include "hookd.secretEnv" (dict "name" .name "env" "HOOKD_OLD_ENCRYPTION_KEYS" "key" $keys.oldEncryptionKeys "optional" true) }}
{{- end }}

{{- define "hookd.commonEnv" -}}
- name: HOOKD_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
{{- end }}

{{/* OpenTelemetry: call with (dict "ctx" $ "service" "hookd-control"). */}}
{{- define "hookd.otelEnv" -}}
{{- if .ctx.Values.otel.endpoint -}}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .ctx.Values.otel.endpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ .service | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME)"
{{- end }}
{{- end }}

{{- define "hookd.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}

{{- define "hookd.dispatcher.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.dispatcher.terminationGracePeriodSeconds }}
{{- add (int64 .Values.dispatcher.shutdownGraceSecs) 15 }}
{{- else }}
{{- int64 .Values.dispatcher.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}
