/* The registry of running jobs: SIGTERM cancels every one of them (daemon.c). */
#include "core/alloc.h"
#include "server/server.h"

void
lms_server_track_job(struct lms_server *s, struct lms_job *job)
{
	struct lms_job_node *n = xcalloc(1, sizeof(*n));
	n->job = job;
	pthread_mutex_lock(&s->jobs_lock);
	n->next = s->jobs;
	s->jobs = n;
	if (atomic_load(&s->stopping))
		lms_job_cancel(job);
	pthread_mutex_unlock(&s->jobs_lock);
}

void
lms_server_untrack_job(struct lms_server *s, struct lms_job *job)
{
	pthread_mutex_lock(&s->jobs_lock);
	for (struct lms_job_node **p = &s->jobs; *p; p = &(*p)->next)
		if ((*p)->job == job) {
			struct lms_job_node *dead = *p;
			*p = dead->next;
			free(dead);
			break;
		}
	pthread_mutex_unlock(&s->jobs_lock);
}

void
lms_server_cancel_jobs(struct lms_server *s)
{
	pthread_mutex_lock(&s->jobs_lock);
	for (struct lms_job_node *n = s->jobs; n; n = n->next)
		lms_job_cancel(n->job);
	pthread_mutex_unlock(&s->jobs_lock);
}
