{{/* Names and labels, defined once for every template. */}}

{{- define "faasopt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "faasopt.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "faasopt.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "faasopt.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels of every object; call with (dict "ctx" $ "component" "operator"). */}}
{{- define "faasopt.labels" -}}
{{ include "faasopt.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: faasopt
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "faasopt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "faasopt.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "faasopt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "faasopt.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "faasopt.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* The namespaces whose TrainingJobs the operator runs. */}}
{{- define "faasopt.jobNamespaces" -}}
{{- default (list .Release.Namespace) .Values.operator.jobNamespaces | uniq | toJson }}
{{- end }}

{{- define "faasopt.natsName" -}}
{{- printf "%s-nats" (include "faasopt.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret holding the NATS token (key "token"); empty when NATS needs no auth. */}}
{{- define "faasopt.natsSecret" -}}
{{- if .Values.nats.enabled }}
{{- default (include "faasopt.natsName" .) .Values.nats.existingSecret }}
{{- else }}
{{- .Values.nats.external.secretName }}
{{- end }}
{{- end }}

{{- define "faasopt.natsUrl" -}}
{{- if .Values.nats.enabled }}
{{- printf "nats://%s.%s.svc:4222" (include "faasopt.natsName" .) .Release.Namespace }}
{{- else }}
{{- required "nats.external.url is required when nats.enabled is false" .Values.nats.external.url }}
{{- end }}
{{- end }}

{{/* nats-server's configuration; it reads $NATS_TOKEN from its environment (the Secret). */}}
{{- define "faasopt.natsConfig" -}}
port: 4222
http_port: 8222
max_payload: {{ .Values.nats.maxPayload }}
authorization {
  token: $NATS_TOKEN
}
jetstream {
  store_dir: /data/jetstream
}
{{- end }}
