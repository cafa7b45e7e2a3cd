#pragma once
/* Prometheus counters of the daemon (GET /metrics). Thread-safe. */
#include <pthread.h>
#include <stdint.h>

#include "core/buf.h"

#define LMS_METRICS_MAX_SERIES 128
#define LMS_METRICS_BUCKETS 12

enum lms_exec_outcome {
	LMS_OUTCOME_OK,	     /* exit code 0 */
	LMS_OUTCOME_NONZERO, /* ran, exited non-zero or by a signal */
	LMS_OUTCOME_TIMEOUT,
	LMS_OUTCOME_OOM,
	LMS_OUTCOME_CANCELLED, /* the client went away or the server stopped */
	LMS_OUTCOME_ERROR,     /* the sandbox could not be set up */
	LMS_OUTCOME_COUNT,
};

struct lms_metrics {
	pthread_mutex_t lock;
	struct {
		char route[48];
		unsigned status;
		uint64_t count;
	} requests[LMS_METRICS_MAX_SERIES];
	int n_requests;
	uint64_t outcomes[LMS_OUTCOME_COUNT];
	uint64_t latency_buckets[LMS_METRICS_BUCKETS]; /* cumulative at render time */
	uint64_t latency_count;
	double latency_sum_s;
	uint64_t net_rx_bytes, net_tx_bytes; /* network sandboxes' interfaces, all executions together */
	struct {
		char backend[48];
		unsigned status;
		uint64_t count;
		double seconds; /* to the response's headers */
	} backend[LMS_METRICS_MAX_SERIES];
	int n_backend;
};

void lms_metrics_init(struct lms_metrics *m);
void lms_metrics_request(struct lms_metrics *m, const char *route, unsigned status);
void lms_metrics_exec(struct lms_metrics *m, enum lms_exec_outcome outcome, double seconds);
/* Bytes a network sandbox received and sent during one execution (its result's net_rx/tx_bytes). */
void lms_metrics_net(struct lms_metrics *m, uint64_t rx, uint64_t tx);
/* A request to an LLM backend: its status (or the 502/503/504 given for it) and the time to its headers. */
void lms_metrics_backend(struct lms_metrics *m, const char *backend, unsigned status, double seconds);
/* Appends the Prometheus text exposition. */
void lms_metrics_render(struct lms_metrics *m, int active, struct lms_buf *out);
