#pragma once
/*
 * GET /v1/sandboxes?node=local of each peer, asked in parallel (libcurl's multi interface, llm/curl-load.h)
 * within one deadline, for the cluster-wide list (cluster-list.h). Each answer is read up to
 * LMS_PEER_LIST_MAX_BYTES; nothing in it is trusted here (lms_cluster_list_merge checks it).
 */
#include <stddef.h>

#include "server/cluster-list.h"
#include "server/cluster.h"

/* A peer that does not accept the connection within this is unreachable (forward.c's bound too). */
#define LMS_PEER_LIST_CONNECT_MS 3000
/* Every peer's answer is in within this, or that peer is unreachable: a list never waits longer. */
#define LMS_PEER_LIST_DEADLINE_MS 5000

struct lms_peer_list_request {
	const char *query;	   /* "&metadata.k=v..." (encoded) after ?node=local, or "" */
	const char *authorization; /* the client's Authorization header, passed on as forwarding does; or NULL */
	const char *request_id;	   /* X-Request-Id: the same in every node's log */
	const char *self;	   /* X-LMS-Forwarded-By: this node's name */
};

/* Asks peers[0..n) and fills answers[0..n) (cleared with lms_peer_answer_clear). */
void lms_peer_lists_fetch(const struct lms_peer *const *peers, size_t n, const struct lms_peer_list_request *rq,
			  struct lms_peer_answer *answers);
