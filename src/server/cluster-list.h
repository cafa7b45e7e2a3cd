#pragma once
/*
 * GET /v1/sandboxes across a cluster (API-NOTES.md, "Cluster"): the peers' answers checked as hostile input
 * and merged with this node's own list. Peers are asked by peer-lists.c; no HTTP in here.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/id.h"

/* What one peer may send: a list bigger than either is refused whole (the node is then unreachable). */
#define LMS_PEER_LIST_MAX_BYTES (8u << 20)
#define LMS_PEER_LIST_MAX_ENTRIES 10000

struct lms_peer_answer {
	char node[LMS_NODE_MAX + 1];
	long status;	     /* the HTTP status; 0 when none came */
	struct lms_buf body; /* at most LMS_PEER_LIST_MAX_BYTES */
	char why[256];	     /* why no usable answer came (connect, timeout, too big); "" when one did */
};

void lms_peer_answer_clear(struct lms_peer_answer *a);

/* Adds "node": node to every entry of data (a JSON array of sandbox objects). */
void lms_cluster_list_name_node(json_t *data, const char *node);

/* The merged list, {"data": [...], "unreachable_nodes": [...], "node_errors": {NODE: why}}: local's entries
 * (steals the reference to local, a {"data": [...]} of this node) and each usable answer's, every entry with
 * its "node", newest first by created_at, then by id. An answer is usable when its status is 200 and its body
 * a JSON object whose "data" is an array of at most LMS_PEER_LIST_MAX_ENTRIES objects, each with a string
 * created_at and a string id that names the answering node (a peer cannot speak for another); anything else
 * puts the node in unreachable_nodes, in the order of answers, with why in node_errors. */
json_t *lms_cluster_list_merge(json_t *local, const struct lms_peer_answer *answers, size_t n);
