/* Removals that failed, kept to be retried by the reaper until they work:
 * a queue each mechanism keeps of its own items, paced so that a storage
 * that keeps failing is asked once every SNAPFS_RETRY_SECONDS. */
#include "config.h"

#include "snapfs.h"

void snapfs_retries_add(struct snapfs_retries *q, struct snapfs_retry *r)
{
	pthread_mutex_lock(&q->lock);
	r->next = q->head;
	q->head = r;
	pthread_mutex_unlock(&q->lock);
}

struct snapfs_retry *snapfs_retries_due(struct snapfs_retries *q)
{
	struct snapfs_retry *r = NULL;

	pthread_mutex_lock(&q->lock);
	if (q->head && (!q->tried || snapfs_elapsed(&q->last) >= SNAPFS_RETRY_SECONDS)) {
		r = q->head;
		q->head = r->next;
		r->next = NULL;
		q->tried = true;
		clock_gettime(CLOCK_MONOTONIC, &q->last);
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

struct snapfs_retry *snapfs_retries_take_all(struct snapfs_retries *q)
{
	struct snapfs_retry *all;

	pthread_mutex_lock(&q->lock);
	all = q->head;
	q->head = NULL;
	pthread_mutex_unlock(&q->lock);
	return all;
}
