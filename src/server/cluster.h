#pragma once
/*
 * This daemon's place in a cluster (docs/deploy.md, "Scaling"): its node name, which goes into every
 * sandbox id it makes ("sbx_NODE_" and 16 hex digits) once it has peers, and its peers by name, to which
 * a request for another node's sandbox is forwarded (forward.c). No HTTP in here.
 */
#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "core/id.h"

/* The header a request passed on to a peer carries (its value: this node's name): a peer never passes
 * such a request on again, nor gathers a list for it (forward.c, peer-lists.c). */
#define LMS_FORWARDED_BY_HEADER "X-LMS-Forwarded-By"

struct lms_peer {
	char name[LMS_NODE_MAX + 1];
	char *url;  /* as given: "http://host:port" */
	char *host; /* a name, an IPv4 address, or an IPv6 address without its brackets */
	char *port; /* decimal */
};

struct lms_cluster {
	char node[LMS_NODE_MAX + 1];
	struct lms_peer *peers; /* this node itself is never among them */
	size_t n_peers;
};

/* A DNS label of at most LMS_NODE_MAX characters: lower-case letters, digits and '-', neither first nor
 * last a '-' (a StatefulSet's pod names are such labels). */
bool lms_node_name_valid(const char *name);

/* node: --node-id (NULL: $HOSTNAME, else the host name, lower-cased); peers: --peers, "NAME=URL,..." (or
 * NULL: no cluster), where URL is http://HOST[:PORT] and this node's own entry, if listed, is skipped.
 * Errors are LMS_ERR_INVALID and name the flag. */
int lms_cluster_init(struct lms_cluster *c, const char *node, const char *peers, struct lms_error **err);
void lms_cluster_free(struct lms_cluster *c);

/* Whether sandbox ids carry the node: only in a cluster, so that a daemon alone keeps its plain ids. */
bool lms_cluster_enabled(const struct lms_cluster *c);

/* The prefix of the sandbox ids this node makes ("sbx_" or "sbx_NODE_"), in out (LMS_SANDBOX_ID_SIZE). */
void lms_cluster_id_prefix(const struct lms_cluster *c, char *out);

/* The node named by sandbox id `id` ("sbx_NODE_HEX"), copied to node (LMS_NODE_MAX + 1): false for an
 * id that names none (a plain "sbx_HEX", a local one, or no sandbox id at all). */
bool lms_sandbox_id_node(const char *id, char node[LMS_NODE_MAX + 1]);

/* The peer called name, or NULL. */
const struct lms_peer *lms_cluster_peer(const struct lms_cluster *c, const char *name);
