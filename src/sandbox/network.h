#pragma once
/*
 * A network sandbox's link to the internet (API.md "Network", docs/SECURITY.md "Network"), set up from the
 * host side once PID 1 is in its cgroup and before any command runs: the packet filter of its network
 * namespace (net/nft-rules.h, installed by `nft -f -` run in that namespace), pasta attached to the
 * namespace and the DNS forwarder (sandbox/net-dns.h), started side by side in the sandbox's cgroup so
 * that they are counted, limited and killed with the sandbox.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/error.h"
#include "net/cidr.h"
#include "sandbox/cgroup.h"
#include "sandbox/sandbox.h"

/* Whether this host can give a sandbox a network: pasta and nft are installed (LMS_ERR_UNSUPPORTED saying
 * what to install otherwise). */
int lms_network_check(struct lms_error **err);

/* The path of a tool the network needs (pasta, nft) in Debian's places, or NULL: the spawner runs with an
 * empty environment, so no PATH. */
const char *lms_network_tool(const char *name);

/* The server's --network-allow-private ranges, comma-separated (validated at start; a bad one here is
 * refused): *out is malloc'd (NULL and 0 for none). */
int lms_network_parse_private(const char *list, struct lms_cidr **out, size_t *n, struct lms_error **err);

/* Brings up the loopback interface of the caller's network namespace (CAP_NET_ADMIN there). -1 with errno. */
int lms_network_loopback_up(void);

/* Closes every descriptor from `first` up, in a child about to live long or exec a helper. */
void lms_network_close_from(int first);

/* The filter, pasta and the DNS forwarder for the sandbox whose PID 1 is pid1 (in cg). spec: the base
 * spec's network settings. Returns when the filter is in place, pasta has configured the namespace's
 * interface and the forwarder listens. */
int lms_network_up(pid_t pid1, const struct lms_cgroup *cg, const struct lms_sandbox_spec *spec,
		   struct lms_error **err);

/* What a network sandbox's setup reads from the host, as one number: the host's addresses (its filter
 * rejects each) and the upstream resolver (spec's net_dns, else the host's resolv.conf). A sandbox prepared
 * ahead is used only while this is unchanged (pool-recipe.c). 0 when either cannot be read. */
uint64_t lms_network_host_stamp(const struct lms_sandbox_spec *spec);

/* The namespace's /proc/PID/net/dev, opened while PID 1 lives: the open file keeps answering for that
 * namespace after PID 1 has exited (a one-shot command's PID 1 ends with it). -1 with errno. */
int lms_network_counters_open(pid_t pid1);
/* Bytes received and sent by the namespace's interfaces but loopback so far; 0 and 0 when unreadable. */
void lms_network_counters(int fd, uint64_t *rx, uint64_t *tx);
