{{/* Names and labels shared by every template. */}}
{{- define "fp.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fp.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fp.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "fp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: loralab
{{- end -}}

{{/* Selector labels of one component: include "fp.selector" (list $ "api") */}}
{{- define "fp.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "fp.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Pods of this release (NetworkPolicy peers) */}}
{{- define "fp.releasePods" -}}
podSelector:
  matchLabels:
    app.kubernetes.io/name: {{ include "fp.name" . }}
    app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fp.image" -}}
{{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end -}}

{{- define "fp.secretName" -}}
{{- if .Values.secret.existingSecret -}}
{{- .Values.secret.existingSecret -}}
{{- else -}}
{{- if .Values.secret.requireExisting -}}
{{- fail "secret.existingSecret is required here (requireExisting): the chart renders no secret from values" -}}
{{- end -}}
{{- printf "%s-secrets" (include "fp.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "fp.resultsClaim" -}}
{{- .Values.results.persistence.existingClaim | default (printf "%s-results" (include "fp.fullname" .)) -}}
{{- end -}}

{{/* Environment of every loralab process: the ConfigMap, then the Secret. */}}
{{- define "fp.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "fp.fullname" . }}-config
  - secretRef:
      name: {{ include "fp.secretName" . }}
{{- end -}}

{{/* Volumes of a loralab pod: the shared results home on /data and a writable /tmp. */}}
{{- define "fp.volumes" -}}
volumes:
  - name: results
    {{- if .Values.results.persistence.enabled }}
    persistentVolumeClaim:
      claimName: {{ include "fp.resultsClaim" . }}
    {{- else }}
    emptyDir: {}
    {{- end }}
  - name: tmp
    emptyDir: {}
{{- end -}}

{{- define "fp.volumeMounts" -}}
volumeMounts:
  - name: results
    mountPath: /data
  - name: tmp
    mountPath: /tmp
{{- end -}}

{{- define "fp.podSpecCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* Probes over HTTP: (list PATH PORT) or (list LIVE_PATH PORT READY_PATH) */}}
{{- define "fp.httpProbes" -}}
{{- $path := index . 0 -}}{{- $port := index . 1 -}}
{{- $ready := $path -}}{{- if gt (len .) 2 }}{{ $ready = index . 2 }}{{ end -}}
startupProbe:
  httpGet: {path: {{ $path }}, port: {{ $port }}}
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  httpGet: {path: {{ $path }}, port: {{ $port }}}
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet: {path: {{ $ready }}, port: {{ $port }}}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}
