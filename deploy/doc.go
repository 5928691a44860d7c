// Package deploy holds gworker's deployment files, checked by its tests:
//
//   - kubernetes/deployment.yaml: a Deployment with liveness (/healthz)
//     and readiness (/readyz) probes and a grace period above the soft
//     shutdown timeout;
//   - keda/scaledobject-rabbitmq.yaml and keda/scaledobject-redis.yaml:
//     KEDA ScaledObjects scaling the Deployment on the queue's length;
//   - systemd/gworker.service: a systemd unit that stops the worker warmly;
//   - grafana/gworker-dashboard.json: a Grafana dashboard of the worker's
//     metrics;
//   - prometheus/gworker-alerts.yaml: Prometheus alerting rules.
//
// It has no code: the package exists so that `go test ./...` checks the
// files.
package deploy
