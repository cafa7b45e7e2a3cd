#include "server/peer-lists.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "llm/curl-load.h"

struct transfer {
	CURL *easy;
	struct curl_slist *headers;
	struct lms_peer_answer *answer;
	char *url;
	bool too_big;
	char error[CURL_ERROR_SIZE];
};

static size_t
on_body(char *data, size_t size, size_t n, void *userdata)
{
	struct transfer *t = userdata;
	if (t->answer->body.len + size * n > LMS_PEER_LIST_MAX_BYTES) {
		t->too_big = true;
		return 0; /* aborts: a peer may not flood this node */
	}
	lms_buf_append(&t->answer->body, data, size * n);
	return size * n;
}

/* Sets up t's transfer: 0, or -1 with t->answer->why said. */
static int
prepare(const struct lms_curl_api *curl, struct transfer *t, const struct lms_peer *p,
	const struct lms_peer_list_request *rq)
{
	t->easy = curl->easy_init();
	if (t->easy == NULL) {
		snprintf(t->answer->why, sizeof(t->answer->why), "cannot start a libcurl transfer");
		return -1;
	}
	t->url = xasprintf("%s/v1/sandboxes?node=local%s", p->url, rq->query);
	char *h = xasprintf("X-Request-Id: %s", rq->request_id);
	t->headers = curl->slist_append(t->headers, h);
	free(h);
	h = xasprintf("%s: %s", LMS_FORWARDED_BY_HEADER, rq->self);
	t->headers = curl->slist_append(t->headers, h);
	free(h);
	if (rq->authorization != NULL && strpbrk(rq->authorization, "\r\n") == NULL) {
		h = xasprintf("Authorization: %s", rq->authorization);
		t->headers = curl->slist_append(t->headers, h);
		free(h);
	}
	CURL *e = t->easy;
	CURLcode c = CURLE_OK;
	const char *failed = NULL;
#define SET(opt, val)                                                                                                  \
	do {                                                                                                           \
		if (c == CURLE_OK && (c = curl->easy_setopt(e, opt, val)) != CURLE_OK)                                 \
			failed = #opt;                                                                                 \
	} while (0)
	SET(CURLOPT_URL, t->url);
	SET(CURLOPT_HTTPHEADER, t->headers);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, t);
	SET(CURLOPT_ERRORBUFFER, t->error);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)LMS_PEER_LIST_CONNECT_MS);
	SET(CURLOPT_TIMEOUT_MS, (long)LMS_PEER_LIST_DEADLINE_MS);
	SET(CURLOPT_PROTOCOLS_STR, "http");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	/* Peers are inside the cluster: an http_proxy of the pod's environment is not the way to them. */
	SET(CURLOPT_PROXY, "");
#undef SET
	if (c != CURLE_OK) {
		snprintf(t->answer->why, sizeof(t->answer->why), "set %s: %s", failed, curl->easy_strerror(c));
		return -1;
	}
	return 0;
}

static void
finish(const struct lms_curl_api *curl, struct transfer *t, CURLcode result)
{
	struct lms_peer_answer *a = t->answer;
	if (t->too_big)
		snprintf(a->why, sizeof(a->why), "answered over %u bytes", LMS_PEER_LIST_MAX_BYTES);
	else if (result != CURLE_OK)
		snprintf(a->why, sizeof(a->why), "%s", t->error[0] ? t->error : curl->easy_strerror(result));
	else if (curl->easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &a->status) != CURLE_OK)
		snprintf(a->why, sizeof(a->why), "no HTTP status");
}

void
lms_peer_lists_fetch(const struct lms_peer *const *peers, size_t n, const struct lms_peer_list_request *rq,
		     struct lms_peer_answer *answers)
{
	for (size_t i = 0; i < n; i++) {
		answers[i] = (struct lms_peer_answer){0};
		snprintf(answers[i].node, sizeof(answers[i].node), "%s", peers[i]->name);
	}
	if (n == 0)
		return;
	struct lms_error *err = NULL;
	const struct lms_curl_api *curl = lms_curl(&err);
	CURLM *multi = curl ? curl->multi_init() : NULL;
	if (multi == NULL) {
		for (size_t i = 0; i < n; i++)
			snprintf(answers[i].why, sizeof(answers[i].why), "this node cannot ask it: %s",
				 err ? err->message : "libcurl's multi handle could not be made");
		lms_error_free(err);
		return;
	}
	struct transfer *ts = xcalloc(n, sizeof(*ts));
	size_t added = 0;
	for (size_t i = 0; i < n; i++) {
		ts[i].answer = &answers[i];
		if (prepare(curl, &ts[i], peers[i], rq) < 0)
			continue;
		CURLMcode mc = curl->multi_add_handle(multi, ts[i].easy);
		if (mc != CURLM_OK) {
			snprintf(answers[i].why, sizeof(answers[i].why), "add the transfer to libcurl: CURLMcode %d",
				 (int)mc);
			continue;
		}
		added++;
	}
	/* Each transfer has its own CURLOPT_TIMEOUT_MS; this bound is only a guard against a loop that
	 * never ends, a little after it. */
	double give_up = lms_monotonic_ms() + LMS_PEER_LIST_DEADLINE_MS + 1000;
	size_t done = 0;
	while (done < added && lms_monotonic_ms() < give_up) {
		int running = 0;
		curl->multi_perform(multi, &running);
		CURLMsg *m;
		int left;
		while ((m = curl->multi_info_read(multi, &left)) != NULL) {
			if (m->msg != CURLMSG_DONE)
				continue;
			for (size_t i = 0; i < n; i++)
				if (ts[i].easy == m->easy_handle)
					finish(curl, &ts[i], m->data.result);
			done++;
		}
		if (done < added)
			curl->multi_poll(multi, NULL, 0, 100, NULL);
	}
	for (size_t i = 0; i < n; i++) {
		if (ts[i].easy != NULL) {
			if (answers[i].why[0] == '\0' && answers[i].status == 0)
				snprintf(answers[i].why, sizeof(answers[i].why), "no answer within %d ms",
					 LMS_PEER_LIST_DEADLINE_MS);
			curl->multi_remove_handle(multi, ts[i].easy);
			curl->easy_cleanup(ts[i].easy);
		}
		curl->slist_free_all(ts[i].headers);
		free(ts[i].url);
		if (answers[i].why[0] != '\0')
			lms_log(LMS_LOG_WARNING, rq->request_id, "a peer's list of sandboxes is missing", "node",
				peers[i]->name, "url", peers[i]->url, "error", answers[i].why, NULL);
	}
	free(ts);
	curl->multi_cleanup(multi);
}
