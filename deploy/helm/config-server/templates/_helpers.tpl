{{/* The release's name for every object: <release>-config-server, unless the release says it. */}}
{{- define "config-server.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "config-server.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "config-server.labels" -}}
{{ include "config-server.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Secret names: the one given, else the one the chart makes (empty: none). */}}
{{- define "config-server.sshSecret" -}}
{{- if .Values.repository.ssh.existingSecret -}}{{ .Values.repository.ssh.existingSecret }}
{{- else if .Values.repository.ssh.privateKey -}}{{ include "config-server.fullname" . }}-ssh
{{- end -}}
{{- end -}}

{{- define "config-server.authSecret" -}}
{{- if .Values.auth.existingSecret -}}{{ .Values.auth.existingSecret }}
{{- else if .Values.auth.file -}}{{ include "config-server.fullname" . }}-auth
{{- end -}}
{{- end -}}

{{- define "config-server.keySecret" -}}
{{- if .Values.encryption.existingSecret -}}{{ .Values.encryption.existingSecret }}
{{- else if .Values.encryption.key -}}{{ include "config-server.fullname" . }}-encryption
{{- end -}}
{{- end -}}

{{- define "config-server.redisSecret" -}}
{{- if .Values.redis.existingSecret -}}{{ .Values.redis.existingSecret }}
{{- else if .Values.redis.url -}}{{ include "config-server.fullname" . }}-redis
{{- end -}}
{{- end -}}

{{/* Memory request in MiB: 160 for a pod before any watcher, plus 26.6 KiB per watcher. */}}
{{- define "config-server.memoryMiB" -}}
{{- add 160 (div (mul .Values.sizing.watchersPerPod 266) 10240) -}}
{{- end -}}

{{/* The server's pods (the Redis pods of the release have component: redis). */}}
{{- define "config-server.serverSelector" -}}
{{ include "config-server.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end -}}
