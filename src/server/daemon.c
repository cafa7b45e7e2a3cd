/*
 * The daemon's life: the privilege check (privileges.c), the listening socket and the token rule, the
 * backends, the spawner (forked before any thread), libmicrohttpd, then SIGTERM / SIGINT / SIGHUP: stop
 * accepting, cancel every running job, finish the responses, clean up.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/self.h"
#include "llm/backend.h"
#include "llm/curl-load.h"
#include "sandbox/gpu-nvml.h"
#include "server/cluster.h"
#include "server/listener.h"
#include "server/privileges.h"
#include "server/processes.h"
#include "server/sandbox-store.h"
#include "server/sandboxes.h"
#include "server/server.h"

/* libmicrohttpd logs once per refused connection: a client that connects in a loop must not turn that into
 * a flood on standard error. At most this many of its lines a second; the rest are counted and said. */
#define MHD_LOG_PER_SECOND 10

/* Each connection's buffer (libmicrohttpd's default is 32 KiB): an upload to the files API is read into it a
 * piece at a time, and 32 KiB pieces cost twice cp's time in system calls. Its pages are touched only as a
 * connection uses them (libmicrohttpd maps a buffer this large), so idle connections do not pay for it. */
#define CONNECTION_MEMORY (256 * 1024)

static bool
mhd_log_admit(unsigned long *suppressed)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static double window_ms;
	static unsigned in_window;
	static unsigned long dropped;
	double now = lms_monotonic_ms();
	pthread_mutex_lock(&lock);
	if (now - window_ms >= 1000) {
		window_ms = now;
		in_window = 0;
		*suppressed = dropped;
		dropped = 0;
	}
	bool admit = in_window < MHD_LOG_PER_SECOND;
	if (admit)
		in_window++;
	else
		dropped++;
	pthread_mutex_unlock(&lock);
	return admit;
}

__attribute__((format(printf, 2, 0))) static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	if (!lms_log_enabled(LMS_LOG_WARNING))
		return;
	unsigned long suppressed = 0;
	bool admit = mhd_log_admit(&suppressed);
	if (suppressed > 0)
		lms_log_fields(LMS_LOG_WARNING, NULL, "libmicrohttpd messages suppressed",
			       LMS_LOG_INT("count", (long long)suppressed));
	if (!admit)
		return;
	char text[512];
	vsnprintf(text, sizeof(text), fmt, ap);
	text[strcspn(text, "\n")] = '\0';
	lms_log(LMS_LOG_WARNING, NULL, "libmicrohttpd", "detail", text, NULL);
}

unsigned
lms_server_idle_timeout_s(const struct lms_server *s)
{
	return (unsigned)((s->cfg->idle_timeout_ms + 999) / 1000);
}

static int
serve(struct lms_config *cfg, const struct lms_cluster *cluster, struct lms_error **err)
{
	struct lms_server s = {.cfg = cfg, .cluster = cluster};
	lms_metrics_init(&s.metrics);
	pthread_mutex_init(&s.jobs_lock, NULL);
	s.have_bash = access("/bin/bash", X_OK) == 0;

	/* A container or unit that withholds a privilege the sandbox needs is said at once, in one line,
	 * rather than as every request's setup failure (docs/deploy.md). Before any thread: it forks. With
	 * --sandbox-optional the gateway is served anyway and each exec fails with the engine's own error. */
	if (lms_privileges_check(&cfg->defaults, err) < 0) {
		if (!cfg->sandbox_optional)
			return -1;
		lms_log(LMS_LOG_ERROR, NULL, "no sandbox can be made here; serving the gateway only", "error",
			(*err)->message, NULL);
		lms_error_free(*err);
		*err = NULL;
	}

	bool loopback = false;
	int fd = lms_listener_open(cfg->listen, &loopback, &s.listen_url, err);
	if (fd < 0)
		return -1;
	if (!loopback && cfg->token == NULL && !cfg->insecure_no_auth) {
		close(fd);
		free(s.listen_url);
		return lms_error_set(err, LMS_ERR_FORBIDDEN, 0,
				     "refusing to serve %s without a token: anyone who reaches it could run commands. "
				     "Set --token-file or LM_SANDBOX_API_TOKEN (or, at your own risk, "
				     "--insecure-no-auth)",
				     cfg->listen);
	}

	struct lms_backends backends = {
	    .connect_timeout_ms = cfg->backend_connect_timeout_ms,
	    .timeout_ms = cfg->backend_timeout_ms,
	    .first_byte_timeout_ms =
		cfg->backend_first_byte_timeout_ms ? cfg->backend_first_byte_timeout_ms : cfg->backend_timeout_ms,
	    .cache_ms = cfg->models_cache_ms,
	};
	if (lms_backends_init(&backends, cfg->ollama_url, cfg->llamacpp_url, cfg->backends, err) < 0) {
		lms_backends_free(&backends);
		close(fd);
		free(s.listen_url);
		return -1;
	}
	s.backends = &backends;

	/* Signals are blocked before any thread or the spawner exists, and then read with sigwait. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGHUP);
	sigprocmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* Pooled sandboxes are prepared with the server's limits, the ceilings of every request. */
	static struct lms_sandbox_spec pool_base;
	lms_sandbox_spec_init(&pool_base);
	pool_base.limits = cfg->defaults;
	/* The static lm-sandbox beside this binary; without it the spawner serves from a fork of the daemon. */
	_cleanup_free_ char *helper = lms_self_sibling("lm-sandbox");
	if (lms_spawner_start(helper, &pool_base, (unsigned)cfg->pool_size, &s.spawner, err) < 0) {
		lms_backends_free(&backends);
		close(fd);
		free(s.listen_url);
		return -1;
	}
	s.conns = lms_conns_new(cfg->header_timeout_ms, err);
	if (s.conns == NULL) {
		close(fd);
		lms_spawner_stop(s.spawner);
		lms_backends_free(&backends);
		free(s.listen_url);
		return -1;
	}
	/* Its expiry thread comes after the spawner's fork, before any request can name a sandbox. */
	struct lms_store *store = NULL;
	if (lms_procs_new(&s.procs, err) < 0 || lms_store_open(cfg->state_dir, &store, err) < 0 ||
	    lms_sandboxes_new(&s, store, cfg->max_sandboxes, cfg->max_ttl_s, &s.sandboxes, err) < 0) {
		lms_store_free(store);
		lms_procs_free(s.procs);
		lms_conns_free(s.conns);
		close(fd);
		lms_spawner_stop(s.spawner);
		lms_backends_free(&backends);
		free(s.listen_url);
		return -1;
	}
	lms_sandboxes_restore(s.sandboxes);
	/* A spawner that dies (a crash, kill -9) is replaced; the sandboxes' files stay (sandboxes.c). */
	_cleanup_error_ struct lms_error *watch_err = NULL;
	if (lms_spawner_watch(s.spawner, &watch_err) < 0)
		lms_log(LMS_LOG_WARNING, NULL, "a spawner that dies will not be replaced", "error", watch_err->message,
			NULL);
	/* One client cannot take every connection (a per-address limit) nor hold one without sending its
	 * headers (conns.c); libmicrohttpd's own timeout, which counts idle time, covers a body that stalls
	 * and a client that takes no bytes of a response (reply.c stops it while a stream waits for its
	 * command or backend). SECURITY.md, "One client against the daemon". Upgrades: the port relay's
	 * WebSockets (routes-ports.c), the only route that answers 101. */
	/* libmicrohttpd's one poll thread reads and writes every connection: an idle or slow one costs no thread; a
	 * complete request's handler runs on a thread of its own while its connection is suspended (workers.c). */
	s.workers = lms_workers_new();
	s.mhd = MHD_start_daemon(MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
				     MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE,
				 0, NULL, NULL, lms_request_on_request, &s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, &s,
				 MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, lms_request_on_completed,
				 &s, MHD_OPTION_NOTIFY_CONNECTION, lms_conns_on_connection, s.conns,
				 MHD_OPTION_CONNECTION_TIMEOUT, lms_server_idle_timeout_s(&s),
				 MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
				 MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->max_connections_per_ip,
				 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY, MHD_OPTION_END);
	if (s.mhd == NULL) {
		lms_workers_free(s.workers);
		lms_conns_free(s.conns);
		close(fd);
		lms_sandboxes_free(s.sandboxes);
		lms_store_free(store);
		lms_procs_free(s.procs);
		lms_spawner_stop(s.spawner);
		lms_backends_free(&backends);
		free(s.listen_url);
		return lms_error_set(err, LMS_ERR_SETUP, 0, "start the HTTP server on %s", cfg->listen);
	}
	lms_log(LMS_LOG_INFO, NULL, "listening", "url", s.listen_url, NULL);

	int sig = 0;
	sigwait(&stop, &sig);
	lms_log(LMS_LOG_INFO, NULL, "shutting down", "signal", strsignal(sig), NULL);
	atomic_store(&s.stopping, true);
	atomic_store(&lms_relay_stopping, true);
	MHD_quiesce_daemon(s.mhd);
	lms_server_cancel_jobs(&s);
	/* libmicrohttpd must not stop with a suspended connection: every handler and stream ends first. */
	lms_workers_stop(s.workers);
	lms_ports_wait_bridges(); /* each sees `stopping` within a second, then closes its upgraded connection */
	MHD_stop_daemon(s.mhd);
	lms_workers_free(s.workers);
	lms_conns_free(s.conns);
	close(fd);
	/* Every request's thread has ended: nothing holds a sandbox any more. Their processes end with the
	 * spawner (its workers destroy them at its end-of-file). */
	lms_sandboxes_free(s.sandboxes);
	lms_store_free(store);
	lms_procs_free(s.procs);
	lms_spawner_stop(s.spawner);
	lms_backends_free(&backends);
	lms_curl_cleanup();
	lms_log(LMS_LOG_INFO, NULL, "stopped", NULL);
	free(s.listen_url);
	return 0;
}

int
lms_server_run(struct lms_config *cfg, struct lms_error **err)
{
	struct lms_cluster cluster;
	if (lms_cluster_init(&cluster, cfg->node_id, cfg->peers, err) < 0)
		return -1;
	if (lms_cluster_enabled(&cluster))
		lms_log(LMS_LOG_INFO, NULL, "cluster", "node", cluster.node, "peers", cfg->peers, NULL);
	/* The GPUs' memory for /healthz, where the driver's NVML is installed; a GPU-less host has none. */
	if (lms_gpu_nvml_load(NULL))
		lms_log(LMS_LOG_INFO, NULL, "nvml loaded: GPU memory is reported", NULL);
	int r = serve(cfg, &cluster, err);
	lms_cluster_free(&cluster);
	return r;
}
