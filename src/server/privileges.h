#pragma once
/*
 * The privileges a sandbox needs, checked once when the daemon starts (it may run in a container, a
 * systemd unit or a Kubernetes pod that withholds some): new user, mount and PID namespaces (a seccomp
 * filter such as Docker's default profile refuses them), mounts in them (AppArmor's docker-default
 * profile refuses them), a fresh /proc (refused while the container masks parts of its own), and a
 * writable cgroup for the limits. docs/deploy.md lists them per way of running.
 */
#include <stdbool.h>

#include "core/error.h"
#include "sandbox/sandbox.h"

/* The steps of the namespace probe, in order: the first that fails is the privilege missing. */
enum lms_priv_step {
	LMS_PRIV_OK,
	LMS_PRIV_USERNS, /* unshare a user namespace, then mount and PID namespaces */
	LMS_PRIV_IDMAP,	 /* write its uid and gid maps (CAP_SETUID, CAP_SETGID, CAP_SETFCAP for uid 0) */
	LMS_PRIV_MOUNT,	 /* mount a tmpfs in them */
	LMS_PRIV_PROC,	 /* mount a fresh proc for the new PID namespace */
};

/* What the probe saw of this process's confinement, for the message. */
struct lms_priv_context {
	bool seccomp_filtered; /* /proc/self/status "Seccomp: 2" */
	char apparmor[64];     /* the enforced AppArmor profile's name, "" when unconfined or absent */
	bool container;	       /* /.dockerenv, /run/.containerenv, or Kubernetes' service variables */
};

/*
 * Checks that a sandbox can be made here; -1 with one line in *err that names the missing privilege and how
 * to grant it (LMS_ERR_FORBIDDEN). `limits` are the server's, used for the probe cgroup.
 */
int lms_privileges_check(const struct lms_limits *limits, struct lms_error **err);

/* The one-line message for a failed namespace step (errnum its errno); pure, for the unit tests. */
int lms_privileges_explain(enum lms_priv_step step, int errnum, const struct lms_priv_context *ctx,
			   struct lms_error **err);
