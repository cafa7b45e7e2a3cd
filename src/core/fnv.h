#pragma once
/*
 * FNV-1a, 64 bits: a routing hint or a change detector over a few strings and addresses (the pool's recipe
 * keys, a network sandbox's host stamp), never a check of anything an attacker chooses the bytes of.
 */
#include <stddef.h>
#include <stdint.h>

#define LMS_FNV1A_INIT 14695981039346656037ull

static inline uint64_t
lms_fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}
