#pragma once
/*
 * The calling thread alone takes another identity for file access (setfsuid, setfsgid, no supplementary
 * groups, no effective capabilities) and gives it back: the daemon's files API acts on a sandbox's files
 * with the permissions of the sandbox's own root user, and no other thread of the daemon is affected.
 * Raw system calls: glibc's wrappers of setgroups and setfsuid broadcast to every thread (setxid).
 *
 * A process that is not root keeps its own identity (it has no other to take): enter is then a no-op
 * that says so (LMS_FSID_UNCHANGED).
 */
#include <stdbool.h>
#include <sys/types.h>

#include "core/error.h"

#define LMS_FSID_MAX_GROUPS 256

struct lms_fsid {
	bool entered;
	uid_t fsuid;
	gid_t fsgid;
	int ngroups;
	gid_t groups[LMS_FSID_MAX_GROUPS];
	unsigned cap_effective[2];
};

/* 0 with the thread's identity changed; -1 (nothing changed) when a step failed. */
int lms_fsid_enter(struct lms_fsid *saved, uid_t uid, gid_t gid, struct lms_error **err);
/* Gives the saved identity back (a no-op after a failed or no-op enter). Aborts if it cannot: a thread
 * of the daemon left with another identity must not go on serving. */
void lms_fsid_leave(struct lms_fsid *saved);
