#pragma once
/*
 * A network sandbox's DNS forwarder process (docs/SECURITY.md "Network", docs/ARCHITECTURE.md): started
 * by the worker after the packet filter and before any command, in the sandbox's cgroup (counted, limited
 * and killed with it). It asks the upstream resolver (net/resolver.h) from the host's network namespace,
 * then enters the sandbox's network and user namespaces, where it is root of the sandbox's user namespace
 * only (no capability of the host's), listens on LMS_NET_DNS_FORWARD:53 of the sandbox's loopback and
 * serves it (net/dns-forwarder.h): names outside the sandbox's allowlist are refused, names resolving to a
 * forbidden address are refused, and an allowlisted sandbox's filter admits what the answers name.
 */
#include <sys/types.h>

#include "core/error.h"
#include "sandbox/cgroup.h"
#include "sandbox/sandbox.h"

/* Returns once the forwarder listens (or with why it could not start). */
int lms_network_dns_start(pid_t pid1, const struct lms_cgroup *cg, const struct lms_sandbox_spec *spec,
			  struct lms_error **err);
