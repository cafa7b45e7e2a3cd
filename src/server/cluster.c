#include "server/cluster.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"

bool
lms_node_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > LMS_NODE_MAX || name[0] == '-' || name[n - 1] == '-')
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
	return true;
}

/* The default node name: $HOSTNAME (a pod's name in Kubernetes), else the host name, lower-cased and cut
 * at its first '.' (a fully qualified name's first label). */
static int
default_node(char out[LMS_NODE_MAX + 1], struct lms_error **err)
{
	char host[256] = "";
	const char *env = getenv("HOSTNAME");
	if (env != NULL && env[0] != '\0')
		snprintf(host, sizeof(host), "%s", env);
	else if (gethostname(host, sizeof(host) - 1) < 0)
		return lms_error_set(err, LMS_ERR_INVALID, errno, "--node-id: read the host name: give --node-id NAME");
	host[strcspn(host, ".")] = '\0';
	for (char *p = host; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (!lms_node_name_valid(host))
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "--node-id: the host name \"%.64s\" is not a node name (lower-case letters, "
				     "digits and '-', at most %d): give --node-id NAME",
				     host, LMS_NODE_MAX);
	memcpy(out, host, strlen(host) + 1);
	return 0;
}

/* url: http://HOST[:PORT] with nothing after it but an optional '/'. */
static int
parse_url(struct lms_peer *p, const char *url, struct lms_error **err)
{
	if (strncmp(url, "http://", 7) != 0)
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "--peers: %s=%.200s: the URL must be http://HOST[:PORT] (peers speak plain HTTP "
				     "inside the cluster)",
				     p->name, url);
	const char *h = url + 7, *end;
	size_t hn;
	if (*h == '[') {
		end = strchr(h, ']');
		if (end == NULL)
			return lms_error_set(err, LMS_ERR_INVALID, 0,
					     "--peers: %s=%.200s: no ']' after the IPv6 address", p->name, url);
		hn = (size_t)(end - h - 1);
		h++;
		end++;
	} else {
		hn = strcspn(h, ":/");
		end = h + hn;
	}
	if (hn == 0 || hn > 253)
		return lms_error_set(err, LMS_ERR_INVALID, 0, "--peers: %s=%.200s: no host", p->name, url);
	for (size_t i = 0; i < hn; i++)
		if (!(isalnum((unsigned char)h[i]) || strchr("-.:", h[i]) != NULL))
			return lms_error_set(err, LMS_ERR_INVALID, 0, "--peers: %s=%.200s: the host has a '%c'",
					     p->name, url, h[i]);
	const char *port = "80";
	size_t pn = 2;
	if (*end == ':') {
		port = end + 1;
		pn = strspn(port, "0123456789");
		long v = pn > 0 && pn <= 5 ? strtol(port, NULL, 10) : 0;
		if (v < 1 || v > 65535)
			return lms_error_set(err, LMS_ERR_INVALID, 0, "--peers: %s=%.200s: the port must be 1 to 65535",
					     p->name, url);
		end = port + pn;
	}
	if (!(*end == '\0' || (end[0] == '/' && end[1] == '\0')))
		return lms_error_set(err, LMS_ERR_INVALID, 0,
				     "--peers: %s=%.200s: nothing may follow HOST[:PORT] (no path, no query)", p->name,
				     url);
	p->host = xstrndup(h, hn);
	p->port = xstrndup(port, pn);
	p->url = xstrndup(url, (size_t)(end - url));
	return 0;
}

int
lms_cluster_init(struct lms_cluster *c, const char *node, const char *peers, struct lms_error **err)
{
	*c = (struct lms_cluster){0};
	if (node != NULL && node[0] != '\0') {
		if (!lms_node_name_valid(node))
			return lms_error_set(err, LMS_ERR_INVALID, 0,
					     "--node-id: \"%.64s\" is not a node name: lower-case letters, digits and "
					     "'-' (not first or last), at most %d",
					     node, LMS_NODE_MAX);
		memcpy(c->node, node, strlen(node) + 1);
	} else if (default_node(c->node, err) < 0)
		return -1;
	if (peers == NULL || peers[0] == '\0')
		return 0;
	char *copy = xstrdup(peers), *save = NULL;
	bool self_listed = false;
	for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		/* Spaces around an entry are dropped: a YAML folded list puts one after each comma. */
		item += strspn(item, " \t\n");
		for (size_t n = strlen(item); n > 0 && strchr(" \t\n", item[n - 1]) != NULL; n--)
			item[n - 1] = '\0';
		if (item[0] == '\0')
			continue;
		char *eq = strchr(item, '=');
		if (eq == NULL || eq == item) {
			lms_error_set(err, LMS_ERR_INVALID, 0, "--peers: \"%.200s\" is not NAME=URL", item);
			goto fail;
		}
		*eq = '\0';
		if (!lms_node_name_valid(item)) {
			lms_error_set(err, LMS_ERR_INVALID, 0, "--peers: \"%.64s\" is not a node name (as --node-id)",
				      item);
			goto fail;
		}
		if (strcmp(item, c->node) == 0 || lms_cluster_peer(c, item) != NULL) {
			if (strcmp(item, c->node) == 0 && !self_listed) {
				self_listed = true; /* one list for every replica: each skips its own entry */
				continue;
			}
			lms_error_set(err, LMS_ERR_INVALID, 0, "--peers: node %s is listed twice", item);
			goto fail;
		}
		c->peers = xrealloc(c->peers, (c->n_peers + 1) * sizeof(*c->peers));
		struct lms_peer *p = &c->peers[c->n_peers];
		*p = (struct lms_peer){0};
		memcpy(p->name, item, strlen(item) + 1);
		c->n_peers++;
		if (parse_url(p, eq + 1, err) < 0)
			goto fail;
	}
	free(copy);
	return 0;
fail:
	free(copy);
	lms_cluster_free(c);
	return -1;
}

void
lms_cluster_free(struct lms_cluster *c)
{
	for (size_t i = 0; i < c->n_peers; i++) {
		free(c->peers[i].url);
		free(c->peers[i].host);
		free(c->peers[i].port);
	}
	free(c->peers);
	c->peers = NULL;
	c->n_peers = 0;
}

bool
lms_cluster_enabled(const struct lms_cluster *c)
{
	return c != NULL && c->n_peers > 0;
}

void
lms_cluster_id_prefix(const struct lms_cluster *c, char *out)
{
	if (lms_cluster_enabled(c))
		snprintf(out, LMS_SANDBOX_ID_SIZE, "sbx_%s_", c->node);
	else
		snprintf(out, LMS_SANDBOX_ID_SIZE, "sbx_");
}

bool
lms_sandbox_id_node(const char *id, char node[LMS_NODE_MAX + 1])
{
	if (strncmp(id, "sbx_", 4) != 0)
		return false;
	const char *start = id + 4, *us = strchr(start, '_');
	if (us == NULL || us == start || (size_t)(us - start) > LMS_NODE_MAX)
		return false;
	memcpy(node, start, (size_t)(us - start));
	node[us - start] = '\0';
	return true;
}

const struct lms_peer *
lms_cluster_peer(const struct lms_cluster *c, const char *name)
{
	for (size_t i = 0; i < c->n_peers; i++)
		if (strcmp(c->peers[i].name, name) == 0)
			return &c->peers[i];
	return NULL;
}
