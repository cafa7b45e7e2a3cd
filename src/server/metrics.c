#include "server/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const double bucket_bounds[LMS_METRICS_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const char *const outcome_names[LMS_OUTCOME_COUNT] = {"ok", "nonzero", "timeout", "oom", "cancelled", "error"};

void
lms_metrics_init(struct lms_metrics *m)
{
	memset(m, 0, sizeof(*m));
	pthread_mutex_init(&m->lock, NULL);
}

void
lms_metrics_request(struct lms_metrics *m, const char *route, unsigned status)
{
	pthread_mutex_lock(&m->lock);
	int i = 0;
	for (; i < m->n_requests; i++)
		if (m->requests[i].status == status && strcmp(m->requests[i].route, route) == 0)
			break;
	if (i == m->n_requests && m->n_requests < LMS_METRICS_MAX_SERIES) {
		snprintf(m->requests[i].route, sizeof(m->requests[i].route), "%s", route);
		m->requests[i].status = status;
		m->n_requests++;
	}
	if (i < m->n_requests)
		m->requests[i].count++;
	pthread_mutex_unlock(&m->lock);
}

void
lms_metrics_net(struct lms_metrics *m, uint64_t rx, uint64_t tx)
{
	pthread_mutex_lock(&m->lock);
	m->net_rx_bytes += rx;
	m->net_tx_bytes += tx;
	pthread_mutex_unlock(&m->lock);
}

void
lms_metrics_exec(struct lms_metrics *m, enum lms_exec_outcome outcome, double seconds)
{
	pthread_mutex_lock(&m->lock);
	m->outcomes[outcome]++;
	for (int b = 0; b < LMS_METRICS_BUCKETS; b++)
		if (seconds <= bucket_bounds[b]) {
			m->latency_buckets[b]++;
			break;
		}
	m->latency_count++;
	m->latency_sum_s += seconds;
	pthread_mutex_unlock(&m->lock);
}

void
lms_metrics_backend(struct lms_metrics *m, const char *backend, unsigned status, double seconds)
{
	pthread_mutex_lock(&m->lock);
	int i = 0;
	for (; i < m->n_backend; i++)
		if (m->backend[i].status == status && strcmp(m->backend[i].backend, backend) == 0)
			break;
	if (i == m->n_backend && m->n_backend < LMS_METRICS_MAX_SERIES) {
		snprintf(m->backend[i].backend, sizeof(m->backend[i].backend), "%s", backend);
		m->backend[i].status = status;
		m->n_backend++;
	}
	if (i < m->n_backend) {
		m->backend[i].count++;
		m->backend[i].seconds += seconds;
	}
	pthread_mutex_unlock(&m->lock);
}

__attribute__((format(printf, 2, 3))) static void
line(struct lms_buf *out, const char *fmt, ...)
{
	char text[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n > 0)
		lms_buf_append(out, text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1);
}

void
lms_metrics_render(struct lms_metrics *m, int active, struct lms_buf *out)
{
	pthread_mutex_lock(&m->lock);
	line(out, "# HELP lms_http_requests_total HTTP requests by route and status.\n");
	line(out, "# TYPE lms_http_requests_total counter\n");
	for (int i = 0; i < m->n_requests; i++)
		line(out, "lms_http_requests_total{route=\"%s\",status=\"%u\"} %llu\n", m->requests[i].route,
		     m->requests[i].status, (unsigned long long)m->requests[i].count);
	line(out, "# HELP lms_executions_total Sandbox executions by outcome.\n");
	line(out, "# TYPE lms_executions_total counter\n");
	for (int o = 0; o < LMS_OUTCOME_COUNT; o++)
		line(out, "lms_executions_total{outcome=\"%s\"} %llu\n", outcome_names[o],
		     (unsigned long long)m->outcomes[o]);
	line(out, "# HELP lms_execution_duration_seconds Wall time of sandbox executions.\n");
	line(out, "# TYPE lms_execution_duration_seconds histogram\n");
	uint64_t cumulative = 0;
	for (int b = 0; b < LMS_METRICS_BUCKETS; b++) {
		cumulative += m->latency_buckets[b];
		line(out, "lms_execution_duration_seconds_bucket{le=\"%g\"} %llu\n", bucket_bounds[b],
		     (unsigned long long)cumulative);
	}
	line(out, "lms_execution_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)m->latency_count);
	line(out, "lms_execution_duration_seconds_sum %.6f\n", m->latency_sum_s);
	line(out, "lms_execution_duration_seconds_count %llu\n", (unsigned long long)m->latency_count);
	line(out, "# HELP lms_network_received_bytes_total Bytes network sandboxes received during executions.\n");
	line(out, "# TYPE lms_network_received_bytes_total counter\n");
	line(out, "lms_network_received_bytes_total %llu\n", (unsigned long long)m->net_rx_bytes);
	line(out, "# HELP lms_network_sent_bytes_total Bytes network sandboxes sent during executions.\n");
	line(out, "# TYPE lms_network_sent_bytes_total counter\n");
	line(out, "lms_network_sent_bytes_total %llu\n", (unsigned long long)m->net_tx_bytes);
	line(out, "# HELP lms_backend_requests_total Requests to LLM backends by backend and status.\n");
	line(out, "# TYPE lms_backend_requests_total counter\n");
	for (int i = 0; i < m->n_backend; i++)
		line(out, "lms_backend_requests_total{backend=\"%s\",status=\"%u\"} %llu\n", m->backend[i].backend,
		     m->backend[i].status, (unsigned long long)m->backend[i].count);
	line(out, "# HELP lms_backend_response_seconds_total Time LLM backends took to answer (to their headers).\n");
	line(out, "# TYPE lms_backend_response_seconds_total counter\n");
	for (int i = 0; i < m->n_backend; i++)
		line(out, "lms_backend_response_seconds_total{backend=\"%s\",status=\"%u\"} %.6f\n",
		     m->backend[i].backend, m->backend[i].status, m->backend[i].seconds);
	line(out, "# HELP lms_active_sandboxes Sandboxes running now.\n");
	line(out, "# TYPE lms_active_sandboxes gauge\n");
	line(out, "lms_active_sandboxes %d\n", active);
	pthread_mutex_unlock(&m->lock);
}
