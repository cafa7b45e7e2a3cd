/* Per-thread file identity (fsid.h). */
#include "core/fsid.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int
caps(bool set, unsigned effective[2], struct __user_cap_data_struct data[2])
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	if (!set) {
		if (syscall(SYS_capget, &hdr, data) < 0)
			return -1;
		effective[0] = data[0].effective;
		effective[1] = data[1].effective;
		return 0;
	}
	data[0].effective = effective[0];
	data[1].effective = effective[1];
	return (int)syscall(SYS_capset, &hdr, data);
}

int
lms_fsid_enter(struct lms_fsid *saved, uid_t uid, gid_t gid, struct lms_error **err)
{
	memset(saved, 0, sizeof(*saved));
	if (geteuid() != 0)
		return 0; /* the daemon's own uid is all a sandbox of it maps: nothing else to become */
	struct __user_cap_data_struct data[2];
	long n = syscall(SYS_getgroups, LMS_FSID_MAX_GROUPS, saved->groups);
	if (n < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "files: getgroups (more than %d groups?)",
				     LMS_FSID_MAX_GROUPS);
	saved->ngroups = (int)n;
	if (caps(false, saved->cap_effective, data) < 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, errno, "files: capget");
	saved->fsuid = (uid_t)syscall(SYS_setfsuid, (uid_t)-1);
	saved->fsgid = (gid_t)syscall(SYS_setfsgid, (gid_t)-1);
	if (saved->fsuid != 0)
		return lms_error_set(err, LMS_ERR_INTERNAL, 0,
				     "files: this thread has another identity already (fsuid %u)", saved->fsuid);
	saved->entered = true;
	unsigned none[2] = {0, 0};
	if (syscall(SYS_setgroups, 0, NULL) < 0 ||
	    (syscall(SYS_setfsgid, gid), (gid_t)syscall(SYS_setfsgid, -1) != gid) ||
	    (syscall(SYS_setfsuid, uid), (uid_t)syscall(SYS_setfsuid, -1) != uid) || caps(true, none, data) < 0) {
		int e = errno;
		lms_fsid_leave(saved);
		return lms_error_set(err, LMS_ERR_INTERNAL, e, "files: take the sandbox's identity (uid %u)", uid);
	}
	return 0;
}

void
lms_fsid_leave(struct lms_fsid *saved)
{
	if (!saved->entered)
		return;
	struct __user_cap_data_struct data[2];
	unsigned now[2];
	/* Capabilities first: setgroups needs CAP_SETGID; fsuid back to 0 needs none (it is the euid). */
	int bad = caps(false, now, data) < 0 || caps(true, saved->cap_effective, data) < 0;
	syscall(SYS_setfsuid, saved->fsuid);
	syscall(SYS_setfsgid, saved->fsgid);
	if (bad || (uid_t)syscall(SYS_setfsuid, -1) != saved->fsuid ||
	    (gid_t)syscall(SYS_setfsgid, -1) != saved->fsgid ||
	    syscall(SYS_setgroups, saved->ngroups, saved->groups) < 0) {
		fprintf(stderr, "lm-sandbox: files: could not give a thread its identity back: %s\n", strerror(errno));
		abort();
	}
	saved->entered = false;
}
