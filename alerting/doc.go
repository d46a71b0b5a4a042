// Package alerting delivers meshdrift's findings: Prometheus metrics, Alertmanager,
// Kubernetes Events and the status API. Each delivery channel is its own subpackage; retry,
// dedupe and resend live once, around them, not inside each.
package alerting
