{{/* Names, labels, and the checks that refuse values that cannot work. */}}

{{- define "jit-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jit-bridge.fullname" -}}
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

{{- define "jit-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jit-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jit-bridge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "jit-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "jit-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jit-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "https" with direct TLS (tls.secretName), else "http". */}}
{{- define "jit-bridge.scheme" -}}
{{- if .Values.tls.secretName }}https{{ else }}http{{ end }}
{{- end }}

{{- define "jit-bridge.mappingConfigMap" -}}
{{- default (printf "%s-mapping" (include "jit-bridge.fullname" .)) .Values.mapping.existingConfigMap }}
{{- end }}

{{/* Where things are in the container. */}}
{{- define "jit-bridge.secretsDir" -}}/run/secrets/jit-bridge{{- end }}
{{- define "jit-bridge.mappingDir" -}}/etc/jit-bridge/mapping{{- end }}
{{- define "jit-bridge.tlsDir" -}}/etc/jit-bridge/tls{{- end }}

{{/*
Settings the chart sets itself (or takes from `secrets`): naming them in `settings` is refused,
so one value never has two sources.
*/}}
{{- define "jit-bridge.reservedSettings" -}}
listen database_url mapping_file tls_cert_file tls_key_file keycloak_client_secret tines_api_key scim_token webhook_secret webhook_secret_previous admin_token tls_key_password settings
{{- end }}

{{/* The secrets the chart can mount, by their setting name (the bridge's `_FILE` settings). */}}
{{- define "jit-bridge.secretSettings" -}}
keycloak_client_secret tines_api_key scim_token webhook_secret webhook_secret_previous admin_token tls_key_password database_url
{{- end }}

{{/* "yes" when a value is given: neither null nor "". */}}
{{- define "jit-bridge.given" -}}
{{- if and (not (kindIs "invalid" .)) (ne (toString .) "") }}yes{{ end }}
{{- end }}

{{/* Every check; included by the workload, so a bad value fails any render. */}}
{{- define "jit-bridge.validate" -}}
{{- $kind := .Values.store.kind }}
{{- if not (has $kind (list "sqlite" "postgresql")) }}
{{- fail (printf "store.kind must be sqlite or postgresql, not %q" (toString $kind)) }}
{{- end }}
{{- $replicas := int .Values.replicaCount }}
{{- if lt $replicas 1 }}
{{- fail (printf "replicaCount must be at least 1, not %d" $replicas) }}
{{- end }}
{{- if and (eq $kind "sqlite") (gt $replicas 1) }}
{{- fail (printf "replicaCount is %d but store.kind is sqlite: SQLite is one process's file on one volume, so it runs exactly one replica. Set replicaCount: 1, or store.kind: postgresql with secrets.database_url for several replicas (docs/postgresql.md)" $replicas) }}
{{- end }}
{{- if and (eq $kind "postgresql") (not .Values.secrets.database_url.secretName) }}
{{- fail "store.kind is postgresql but secrets.database_url.secretName is empty: name the existing Secret (and key) holding postgresql+psycopg://USER:PASSWORD@HOST:5432/DB" }}
{{- end }}
{{- if and (eq $kind "sqlite") .Values.secrets.database_url.secretName }}
{{- fail "secrets.database_url is set but store.kind is sqlite: set store.kind: postgresql to use that database, or empty secrets.database_url.secretName" }}
{{- end }}
{{- if and (eq $kind "sqlite") (not (hasPrefix "/" .Values.store.sqlite.path)) }}
{{- fail (printf "store.sqlite.path must be an absolute path in the container, not %q" .Values.store.sqlite.path) }}
{{- end }}
{{- $reserved := splitList " " (include "jit-bridge.reservedSettings" .) }}
{{- range $name, $value := .Values.settings }}
{{- if has $name $reserved }}
{{- fail (printf "settings.%s: the chart sets %s itself; use the value that owns it (secrets.<name> for a secret, store for the database, mapping for the mapping file, tls.secretName for TLS, containerPort for listen)" $name $name) }}
{{- end }}
{{- if ne $name (lower $name) }}
{{- fail (printf "settings.%s: settings are named in lower case with underscores, as in `jit-bridge config` (e.g. keycloak_url)" $name) }}
{{- end }}
{{- end }}
{{- $secretNames := splitList " " (include "jit-bridge.secretSettings" .) }}
{{- range $name, $secret := .Values.secrets }}
{{- if not (has $name $secretNames) }}
{{- fail (printf "secrets.%s: not a secret the bridge reads from a file; one of: %s" $name (join ", " $secretNames)) }}
{{- end }}
{{- if and $secret.secretName (not $secret.key) }}
{{- fail (printf "secrets.%s.key: name the key of Secret %q that holds it" $name $secret.secretName) }}
{{- end }}
{{- end }}
{{- if and .Values.secrets.webhook_secret_previous.secretName (not .Values.secrets.webhook_secret.secretName) }}
{{- fail "secrets.webhook_secret_previous is set but secrets.webhook_secret is empty: the previous secret is the old one kept while rotating webhook_secret; name the new secret in secrets.webhook_secret (docs/operations.md, Rotating secrets)" }}
{{- end }}
{{- if and .Values.secrets.tls_key_password.secretName (not .Values.tls.secretName) }}
{{- fail "secrets.tls_key_password is set but tls.secretName is empty: the passphrase is for the key of the bridge's own certificate (direct TLS); name its kubernetes.io/tls Secret in tls.secretName" }}
{{- end }}
{{- if and (not .Values.mapping.existingConfigMap) (not .Values.mapping.content) }}
{{- fail "mapping: give the mapping as mapping.content (the mapping file's JSON, as YAML) or name an existing ConfigMap in mapping.existingConfigMap" }}
{{- end }}
{{- $timeout := 30.0 }}
{{- if hasKey .Values.settings "shutdown_timeout" }}
{{- if not (kindIs "invalid" .Values.settings.shutdown_timeout) }}
{{- $timeout = float64 .Values.settings.shutdown_timeout }}
{{- end }}
{{- end }}
{{- if le (float64 .Values.terminationGracePeriodSeconds) $timeout }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be larger than settings.shutdown_timeout (%v): Kubernetes would kill the bridge before it handed back its work" .Values.terminationGracePeriodSeconds $timeout) }}
{{- end }}
{{- if .Values.podDisruptionBudget.enabled }}
{{- $min := include "jit-bridge.given" .Values.podDisruptionBudget.minAvailable }}
{{- $max := include "jit-bridge.given" .Values.podDisruptionBudget.maxUnavailable }}
{{- if and $min $max }}
{{- fail "podDisruptionBudget: give minAvailable or maxUnavailable, not both (set the other to \"\")" }}
{{- end }}
{{- if not (or $min $max) }}
{{- fail "podDisruptionBudget: give minAvailable or maxUnavailable (a number or a percentage)" }}
{{- end }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if hasPrefix "JIT_BRIDGE_" .name }}
{{- $setting := lower (trimPrefix "JIT_BRIDGE_" .name) }}
{{- if or (has $setting $reserved) (has (trimSuffix "_file" $setting) $reserved) }}
{{- fail (printf "extraEnv: %s is set by the chart; use the value that owns it" .name) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
